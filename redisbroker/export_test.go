package redisbroker

// ChannelOf returns topic's Redis channel name, as the broker writes it.
func (b *Broker) ChannelOf(topic string) string {
	tag := ""
	if b.opts.Cluster {
		tag = slotTag(SlotOf(topic))
	}
	r := newRESPReader(bytesReader(appendChannel(nil, b.opts.Prefix, tag, topic)))
	v, err := r.value()
	if err != nil {
		panic(err)
	}
	return v.(string)
}

// SlotOf returns the Redis Cluster slot the broker puts topic in.
func SlotOf(topic string) int { return int(topicHash(topic) % numSlots) }

// HistoryKeys returns the keys of topic's history: its stream and hash.
func (b *Broker) HistoryKeys(topic string) (stream, meta string) {
	return b.historyKeys(b.tagOf(topic), topic)
}

// RegistryKey returns the key of the presence registry called name
// ("p:nodes", "p:dead", "p:idx:<node>", …).
func (b *Broker) RegistryKey(name string) string { return b.key(b.tagOf(registryTopic), name) }

// RoomKeys returns the keys of room's presence: its hash of users and
// node's hash of the room.
func (b *Broker) RoomKeys(node, room string) (roomKey, nodeKey string) {
	rk, nk, _ := b.roomKeys(node, room)
	return rk, nk
}
