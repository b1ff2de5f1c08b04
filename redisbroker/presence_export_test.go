package redisbroker

// PresenceLogKey returns the key of room's change log.
func (b *Broker) PresenceLogKey(room string) string { return b.logKey(room) }
