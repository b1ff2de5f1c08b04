package redisbroker

// PresenceDeltas returns how many RoomPresence answers the broker made
// from a kept answer and the room's change log.
func (b *Broker) PresenceDeltas() uint64 {
	if ps := b.pres.Load(); ps != nil {
		return ps.deltas.Load()
	}
	return 0
}

// PresenceLogKey returns the key of room's change log.
func (b *Broker) PresenceLogKey(room string) string { return b.logKey(room) }
