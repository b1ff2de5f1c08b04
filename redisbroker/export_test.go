package redisbroker

// ShardOf returns the address of the server topic lives on ("" if none).
func (b *Broker) ShardOf(topic string) string {
	t := b.topo.Load()
	if t == nil {
		return ""
	}
	s, _ := t.route(topic)
	if s == nil {
		return ""
	}
	return s.addr
}

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
