package wsroom

// EnvelopeRoundTrip encodes a broker envelope and decodes arbitrary bytes,
// for the fuzz test: it returns what parsing p yields.
func EnvelopeRoundTrip(kind byte, typ MessageType, names []string, data []byte) (ok bool, gotKind byte, gotType MessageType, gotNames []string, gotData []byte) {
	var node [nodeIDLen]byte
	env, ok := parseEnvelope(appendEnvelope(nil, kind, typ, &node, names, data))
	return ok, env.kind, env.typ, env.names, env.data
}

// ParseEnvelope reports whether p decodes as a broker envelope.
func ParseEnvelope(p []byte) bool {
	_, ok := parseEnvelope(p)
	return ok
}
