package natsbroker

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// pubReq is one send waiting for its batch's round trip.
type pubReq struct {
	payload  []byte
	subjects []string
	err      error      // set by the publisher
	done     chan error // receives the outcome once
}

// Publish implements wsroom.Broker. It queues payload for each topic and
// returns; the publisher goroutine writes queued sends to the client in
// batches of up to MaxBatch, then makes one PING/PONG round trip for the
// batch, and wait returns its verdict, within about twice PublishTimeout.
// While the connection is down it fails at once with ErrUnavailable.
func (b *Broker) Publish(payload []byte, topics ...string) (wait func() error) {
	if err := b.unusable(); err != nil {
		return b.failed(err)
	}
	if !b.up.Load() {
		return b.failed(ErrUnavailable)
	}
	if limit := b.maxPayload.Load(); limit > 0 && int64(len(payload)) > limit {
		return b.failed(fmt.Errorf("%w: %d bytes, the server accepts %d", ErrPayloadTooLarge, len(payload), limit))
	}
	r := &pubReq{payload: payload, subjects: make([]string, len(topics)), done: make(chan error, 1)}
	for i, t := range topics {
		s, err := b.subject(t)
		if err != nil {
			return b.failed(err)
		}
		r.subjects[i] = s
	}
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closing {
		return b.failed(ErrClosed)
	}
	select {
	case b.reqs <- r:
		return r.wait
	default:
	}
	// The queue is full: NATS is slow or away. Wait, within bounds.
	t := time.NewTimer(b.opts.PublishTimeout)
	defer t.Stop()
	select {
	case b.reqs <- r:
		return r.wait // the publisher answers every queued request
	case <-t.C:
		return b.failed(errors.New("natsbroker: publish queue full: NATS is not keeping up"))
	case <-b.stop:
		return b.failed(ErrClosed)
	}
}

func (r *pubReq) wait() error { return <-r.done }

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

// publisher writes queued sends to the client in batches of up to
// MaxBatch, each followed by one round trip, and answers each send.
// Sends queued during a round trip form the next batch.
func (b *Broker) publisher() {
	defer b.wg.Done()
	batch := make([]*pubReq, 0, b.opts.MaxBatch)
	for {
		select {
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		case <-b.stopQueue:
			for { // Close refuses new sends: answer the queued ones
				select {
				case r := <-b.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.flush(batch)
		clear(batch)
	}
}

// flush writes one batch and confirms it with one round trip. The client
// copies each payload into its write buffer (one write to the socket for
// the whole batch, with the PING), so payloads are not kept.
func (b *Broker) flush(batch []*pubReq) {
	// The connection the publishes are written on: a reconnection before
	// the round trip's PONG fails the batch (the client discards what it
	// had not yet written when the connection broke).
	gen := b.nc.Stats().Reconnects
	sent := false
	for _, r := range batch {
		for _, s := range r.subjects {
			if err := b.nc.Publish(s, r.payload); err != nil {
				r.err = b.publishError(err, len(r.payload))
				break
			}
		}
		sent = sent || r.err == nil
	}
	var err error
	if sent {
		var pongGen uint64
		pongGen, err = b.ping()
		if err == nil && pongGen != gen {
			err = errReconnected
		}
	}
	for _, r := range batch {
		if r.err == nil {
			r.err = err
		}
		if r.err != nil {
			b.publishErrors.Add(1)
		} else {
			b.published.Add(1)
		}
		r.done <- r.err
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
