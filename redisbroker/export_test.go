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
