package wsroom

// Compressions returns how many messages h has compressed: once per
// broadcast and distinct compression setting, once per Conn.Send.
func Compressions(h *Hub) uint64 { return h.deflateStats.compressions.Load() }

// InflatedBytes returns how many bytes h has produced inflating inbound
// compressed messages, including messages refused for their size.
func InflatedBytes(h *Hub) uint64 { return h.deflateStats.inflated.Load() }
