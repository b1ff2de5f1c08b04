// Package wsroom mounts real-time WebSocket rooms on any route of an
// existing net/http server. Clients use the plain browser WebSocket API;
// application code sends to a named room, to specific user IDs (every
// connection of those users and no one else), or to everyone.
//
// Use New to create a Hub from Options. A Hub is an http.Handler: mount it
// on a route (mux.Handle("GET /ws", hub)), or wrap an existing handler with
// Hub.Middleware to upgrade WebSocket requests and pass every other request
// on. Use Hub.Room to address a room, Room.Broadcast, Room.BroadcastExcept
// and Room.SendTo to send into it, Hub.SendTo to reach users wherever they
// are connected, and Hub.Broadcast to reach everyone. Conn.Join and
// Conn.Leave manage membership; Options.OnConnect, OnMessage and OnClose
// are the lifecycle callbacks. Relay is a ready-made OnMessage handler for
// clients that address each other. Hub.Shutdown ends everything gracefully.
//
// # Concurrency
//
// Every method of Hub, Room and Conn is safe for concurrent use. Callbacks
// for one connection run one at a time on that connection's reader; sends
// never block on a peer, and no lock is held while writing to a socket.
//
// # Delivery
//
// Each connection has one writer and a bounded queue of encoded frames.
// A send encodes its frame once and appends a shared reference to each
// recipient's queue; the writer hands everything queued to the kernel in
// one vectored write under Options.WriteTimeout. Per connection, messages
// are delivered in the order they were queued. A message is either
// delivered or its connection is closed with a reason: a connection whose
// queue would overflow is closed with 1008 "slow consumer" and counted in
// Stats; a connection whose socket does not accept bytes for WriteTimeout
// is dropped. Nothing is dropped silently, and a sender is never blocked
// by a slow or dead peer.
//
// # Close codes
//
// wsroom closes with 1000 (Conn.Close default), 1001 (Shutdown), 1002
// (protocol violation), 1007 (invalid UTF-8 or compressed data), 1008 (slow consumer or an
// OnConnect rejection), 1009 (message over ReadLimit) and 1011 (a panic in
// a callback). Handshakes are refused with HTTP 400, 403, 405, 426 or 503,
// or the status Identify chooses.
package wsroom
