package natsbroker

// Topic is the inverse of Subject, for tests.
func Topic(prefix, subject string) (string, bool) {
	return (&Broker{prefix: prefix + "."}).topic(subject)
}
