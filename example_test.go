package wsroom_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsroom/wsroom"
)

// wsURL turns an httptest URL into a WebSocket URL.
func wsURL(httpURL, path string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http") + path
}

// exampleDial connects a client; examples use gobwas/ws as the client.
func exampleDial(url string) net.Conn {
	conn, br, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		panic(err)
	}
	return exampleConn(conn, br)
}

// exampleConn reads first what ws.Dial buffered past the handshake, if
// anything (the server spoke right after its 101).
func exampleConn(conn net.Conn, br *bufio.Reader) net.Conn {
	if br != nil {
		return bufferedConn{conn, io.MultiReader(br, conn)}
	}
	return conn
}

// bufferedConn reads through the bytes ws.Dial buffered.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// exampleRead reads one text message from the server.
func exampleRead(conn net.Conn) string {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(conn)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// exampleShutdown ends the hub, then the HTTP server.
func exampleShutdown(hub *wsroom.Hub, srv *httptest.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hub.Shutdown(ctx)
	srv.Close()
}

func ExampleNew() {
	hub := wsroom.New(wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) {
			c.Send(wsroom.Text("echo: " + m.String()))
		},
	})
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	defer exampleShutdown(hub, srv)

	conn := exampleDial(wsURL(srv.URL, "/ws"))
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("hello"))
	fmt.Println(exampleRead(conn))
	// Output: echo: hello
}

func ExampleHub_Middleware() {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "plain HTTP for", r.URL.Path)
	})
	hub := wsroom.New(wsroom.Options{
		OnMessage: func(c *wsroom.Conn, m wsroom.Message) { c.Send(m) },
	})
	// WebSocket handshakes are upgraded on any path; everything else
	// reaches app untouched.
	srv := httptest.NewServer(hub.Middleware(app))
	defer exampleShutdown(hub, srv)

	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	conn := exampleDial(wsURL(srv.URL, "/live"))
	defer conn.Close()
	wsutil.WriteClientText(conn, []byte("over WebSocket"))
	fmt.Println(exampleRead(conn))
	// Output:
	// plain HTTP for /status
	// over WebSocket
}

func ExampleRoom_Broadcast() {
	hub := wsroom.New(wsroom.Options{
		Identify: func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error {
			c.Join("lobby")
			return c.Send(wsroom.Text("welcome " + c.UserID()))
		},
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)

	alice := exampleDial(wsURL(srv.URL, "/?user=alice"))
	defer alice.Close()
	bob := exampleDial(wsURL(srv.URL, "/?user=bob"))
	defer bob.Close()
	fmt.Println(exampleRead(alice))
	fmt.Println(exampleRead(bob))

	// From anywhere in the application:
	hub.Room("lobby").Broadcast(wsroom.Text("hello, lobby"))
	fmt.Println("alice got:", exampleRead(alice))
	fmt.Println("bob got:", exampleRead(bob))
	// Output:
	// welcome alice
	// welcome bob
	// alice got: hello, lobby
	// bob got: hello, lobby
}

func ExampleHub_SendTo() {
	hub := wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { return c.Send(wsroom.Text("hi " + c.UserID())) },
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)

	// alice has two tabs open, bob one.
	aliceTab1 := exampleDial(wsURL(srv.URL, "/?user=alice"))
	defer aliceTab1.Close()
	aliceTab2 := exampleDial(wsURL(srv.URL, "/?user=alice"))
	defer aliceTab2.Close()
	bob := exampleDial(wsURL(srv.URL, "/?user=bob"))
	defer bob.Close()
	for _, c := range []net.Conn{aliceTab1, aliceTab2, bob} {
		exampleRead(c) // the greeting: every connection is registered
	}

	hub.SendTo(wsroom.Text("for alice only"), "alice")
	hub.SendTo(wsroom.Text("for bob"), "bob")
	fmt.Println("alice tab 1:", exampleRead(aliceTab1))
	fmt.Println("alice tab 2:", exampleRead(aliceTab2))
	fmt.Println("bob:", exampleRead(bob))
	// Output:
	// alice tab 1: for alice only
	// alice tab 2: for alice only
	// bob: for bob
}

func ExampleRelay() {
	hub := wsroom.New(wsroom.Options{
		Identify:  func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil },
		OnConnect: func(c *wsroom.Conn, _ *http.Request) error { c.Join("team"); return c.Send(wsroom.Text("ready")) },
		OnMessage: wsroom.Relay(wsroom.RelayOptions{}), // default: may address rooms you are in and users you share a room with
	})
	srv := httptest.NewServer(hub)
	defer exampleShutdown(hub, srv)

	alice := exampleDial(wsURL(srv.URL, "/?user=alice"))
	defer alice.Close()
	bob := exampleDial(wsURL(srv.URL, "/?user=bob"))
	defer bob.Close()
	exampleRead(alice)
	exampleRead(bob)

	// alice addresses bob; the server stamps "from".
	wsutil.WriteClientText(alice, []byte(`{"to":["bob"],"data":{"text":"psst"}}`))
	fmt.Println(exampleRead(bob))
	// An envelope alice may not send is refused, to her alone.
	wsutil.WriteClientText(alice, []byte(`{"room":"admins","data":1,"id":"m2"}`))
	fmt.Println(exampleRead(alice))
	// Output:
	// {"from":"alice","data":{"text":"psst"}}
	// {"error":"forbidden: not a member of the room","id":"m2"}
}

func ExampleHub_Shutdown() {
	hub := wsroom.New(wsroom.Options{})
	srv := httptest.NewServer(hub)
	defer srv.Close()

	conn := exampleDial(wsURL(srv.URL, "/"))
	defer conn.Close()
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- hub.Shutdown(ctx)
	}()

	// The client sees the close frame; wsutil answers it.
	_, err := wsutil.ReadServerText(conn)
	fmt.Println(err)
	fmt.Println("shutdown:", <-done)
	fmt.Println("send after shutdown:", hub.Broadcast(wsroom.Text("late")))
	// Output:
	// ws closed: 1001 server shutdown
	// shutdown: <nil>
	// send after shutdown: wsroom: hub is shut down
}
