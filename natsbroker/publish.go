package natsbroker

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// roundTrip is one PING/PONG exchange shared by the publishes made before
// it: its PONG proves that the server has processed them, provided they
// were written on the connection the PING went out on.
type roundTrip struct {
	done chan struct{} // closed when gen and err are set
	gen  uint64        // the connection (count of reconnections) the PONG came on
	err  error
}

// Publish implements wsroom.Broker. It writes payload for each topic to
// the client's outgoing buffer (the client copies it; the write blocks
// only when the buffer is full and the socket slow, for at most
// PublishTimeout) and returns. wait blocks until the next round trip to
// the server has confirmed the publishes, within about twice
// PublishTimeout. While the connection is down it fails at once with
// ErrUnavailable.
func (b *Broker) Publish(payload []byte, topics ...string) (wait func() error) {
	if err := b.unusable(); err != nil {
		return b.failed(err)
	}
	if !b.up.Load() {
		return b.failed(ErrUnavailable)
	}
	if limit := b.nc.MaxPayload(); limit > 0 && int64(len(payload)) > limit {
		return b.failed(fmt.Errorf("%w: %d bytes, the server accepts %d", ErrPayloadTooLarge, len(payload), limit))
	}
	subjects := make([]string, len(topics))
	for i, t := range topics {
		s, err := b.subject(t)
		if err != nil {
			return b.failed(err)
		}
		subjects[i] = s
	}
	// The connection the publishes are written on: a reconnection between
	// here and the round trip's PONG makes the wait fail (the client
	// discards what it had not yet written when the connection broke).
	gen := b.nc.Stats().Reconnects
	for _, s := range subjects {
		if err := b.nc.Publish(s, payload); err != nil {
			return b.failed(b.publishError(err, len(payload)))
		}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.failed(ErrClosed)
	}
	rt := b.next
	if rt == nil {
		rt = &roundTrip{done: make(chan struct{})}
		b.next = rt
	}
	b.mu.Unlock()
	select {
	case b.flushKick <- struct{}{}:
	default: // the flusher is already due to run
	}
	return func() error {
		<-rt.done
		err := rt.err
		if err == nil && rt.gen != gen {
			err = errReconnected
		}
		if err != nil {
			b.publishErrors.Add(1)
			return err
		}
		b.published.Add(1)
		return nil
	}
}

// unusable returns the error of a broker that cannot publish or
// subscribe at all: closed, not started, or given options the client
// refused.
func (b *Broker) unusable() error {
	switch {
	case b.isClosed():
		return ErrClosed
	case b.connErr != nil:
		return b.connErr
	case b.nc == nil:
		return errors.New("natsbroker: not started (the Hub calls Start)")
	}
	return nil
}

// failed counts a publish that failed before it was sent and returns a
// wait reporting err.
func (b *Broker) failed(err error) func() error {
	b.publishErrors.Add(1)
	return func() error { return err }
}

// publishError translates the client's Publish errors.
func (b *Broker) publishError(err error, size int) error {
	switch {
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		return ErrUnavailable // disconnected, and nothing is buffered meanwhile
	case errors.Is(err, nats.ErrConnectionClosed):
		return ErrClosed
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %d bytes, the server accepts %d", ErrPayloadTooLarge, size, b.nc.MaxPayload())
	}
	return fmt.Errorf("natsbroker: publish: %w", err)
}

// flusher runs one round trip at a time for the publishes waiting for
// one; publishes made during a round trip wait for the next.
func (b *Broker) flusher() {
	defer b.wg.Done()
	for {
		select {
		case <-b.flushKick:
		case <-b.stop:
			b.mu.Lock() // Close has set closed: nobody adds to next any more
			rt := b.next
			b.next = nil
			b.mu.Unlock()
			if rt != nil {
				rt.err = ErrClosed
				close(rt.done)
			}
			return
		}
		b.mu.Lock()
		rt := b.next
		b.next = nil
		b.mu.Unlock()
		if rt == nil {
			continue
		}
		rt.gen, rt.err = b.ping()
		close(rt.done)
	}
}

// ping makes one round trip to the server and returns the connection it
// was made on.
func (b *Broker) ping() (gen uint64, err error) {
	before := b.nc.Stats().Reconnects
	err = b.nc.FlushTimeout(b.opts.PublishTimeout)
	gen = b.nc.Stats().Reconnects
	switch {
	case err == nil && gen != before:
		// The PING was queued while disconnected and answered after the
		// reconnection: it proves nothing about earlier publishes.
		err = errReconnected
	case errors.Is(err, nats.ErrConnectionClosed) && b.isClosed():
		err = ErrClosed
	case errors.Is(err, nats.ErrConnectionClosed):
		err = errReconnected // the client cleared the round trip when the connection broke
	case errors.Is(err, nats.ErrTimeout):
		err = fmt.Errorf("natsbroker: NATS did not confirm within %v (PublishTimeout): %w", b.opts.PublishTimeout, err)
	case err != nil:
		err = fmt.Errorf("natsbroker: %w", err)
	}
	return gen, err
}
