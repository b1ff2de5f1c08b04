package natsbroker

import (
	"context"
	"errors"
	"fmt"
)

// Subscribe implements wsroom.Broker. It records the topics and returns
// without waiting for the network or the client: the subscriber goroutine
// hands them to the client, which sends them to the server (at once, or
// on reconnection). A topic whose name is longer than MaxNameLen is
// refused with ErrNameTooLong; the others in the call are still
// subscribed.
func (b *Broker) Subscribe(topics ...string) error { return b.setWant(true, topics) }

// Unsubscribe implements wsroom.Broker, like Subscribe.
func (b *Broker) Unsubscribe(topics ...string) error { return b.setWant(false, topics) }

func (b *Broker) setWant(on bool, topics []string) error {
	if err := b.unusable(); err != nil {
		return err
	}
	var bad []error
	b.subMu.Lock()
	for _, t := range topics {
		if _, err := b.subject(t); err != nil {
			bad = append(bad, err)
			continue
		}
		b.pending[t] = on
	}
	b.wantSeq++
	b.subMu.Unlock()
	select {
	case b.subKick <- struct{}{}:
	default:
	}
	return errors.Join(bad...)
}

// subscriber applies subscription changes. The client records each
// subscription, sends SUB or UNSUB to the server when connected, and
// sends every recorded subscription again after a reconnection. Every
// subscription delivers to b.msgs.
func (b *Broker) subscriber() {
	defer b.wg.Done()
	for {
		select {
		case <-b.subKick:
		case <-b.stop:
			return
		}
		b.subMu.Lock()
		changes, seq := b.pending, b.wantSeq
		b.pending = make(map[string]bool)
		b.subMu.Unlock()
		for t, on := range changes {
			if err := b.apply(t, on); err != nil && !b.isClosed() {
				b.opts.Logger.Error("natsbroker: subscription change failed", "topic", t, "subscribe", on, "err", err)
			}
		}
		b.subMu.Lock()
		b.appliedSeq = seq
		close(b.applied)
		b.applied = make(chan struct{})
		b.subMu.Unlock()
	}
}

// Sync returns once every Subscribe and Unsubscribe made before the call
// is in effect on the server: handed to the client, then followed by a
// round trip on the connection. It is for tests and readiness checks (the
// Hub never needs it); it fails at once with ErrUnavailable while
// disconnected, and when ctx ends first (a ctx without a deadline gets
// PublishTimeout).
func (b *Broker) Sync(ctx context.Context) error {
	if err := b.unusable(); err != nil {
		return err
	}
	for {
		b.subMu.Lock()
		done, applied := b.appliedSeq >= b.wantSeq, b.applied
		b.subMu.Unlock()
		if done {
			break
		}
		select {
		case <-applied:
		case <-b.stop:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !b.up.Load() {
		return ErrUnavailable
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.PublishTimeout)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsbroker: sync: %w", err)
	}
	return nil
}

// apply subscribes to topic (on) or unsubscribes from it.
func (b *Broker) apply(topic string, on bool) error {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	sub := b.subs[topic]
	switch {
	case on && sub == nil:
		subject, err := b.subject(topic)
		if err != nil {
			return err
		}
		if sub, err = b.nc.ChanSubscribe(subject, b.msgs); err != nil {
			return fmt.Errorf("natsbroker: subscribe: %w", err)
		}
		b.subs[topic] = sub
	case !on && sub != nil:
		if n, err := sub.Dropped(); err == nil {
			b.lostDropped += uint64(n)
		}
		delete(b.subs, topic)
		if err := sub.Unsubscribe(); err != nil {
			return fmt.Errorf("natsbroker: unsubscribe: %w", err)
		}
	}
	return nil
}

// receiver hands received messages to the Hub, one at a time.
func (b *Broker) receiver() {
	defer b.wg.Done()
	for {
		select {
		case m := <-b.msgs:
			topic, ok := b.topic(m.Subject)
			if !ok {
				b.opts.Logger.Warn("natsbroker: dropped a message on an unexpected subject", "subject", m.Subject)
				continue
			}
			b.received.Add(1)
			b.deliver(topic, m.Data)
		case <-b.stop:
			return
		}
	}
}
