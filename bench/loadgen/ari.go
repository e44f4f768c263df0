package main

// The ARI side: REST resources, the events WebSocket and the chan_websocket
// media endpoint, modelled on what Asterisk 23 answers to the calls the
// gateway makes (see /work/shared/reference/asterisk-interfaces.md §1, §4, §5).

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type chanKind int

const (
	kindCall chanKind = iota
	kindSnoop
	kindExternal
)

type channel struct {
	id, name  string
	kind      chanKind
	app, args string
	created   string
	spied     *call // snoop: the call it listens to
	call      *call // externalMedia: the call whose media it carries (set by addChannel)
	leg       mediaLeg
	connID    string // WebSocket channel: MEDIA_WEBSOCKET_CONNECTION_ID
	stopMedia chan struct{}
	closeOnce sync.Once
}

func (c *channel) json() map[string]any {
	appData := ""
	if c.app != "" {
		appData = c.app
		if c.args != "" {
			appData += "," + c.args
		}
	}
	return map[string]any{
		"id":           c.id,
		"name":         c.name,
		"state":        "Up",
		"protocol_id":  "",
		"caller":       map[string]string{"name": "", "number": ""},
		"connected":    map[string]string{"name": "", "number": ""},
		"accountcode":  "",
		"dialplan":     map[string]any{"context": "default", "exten": "s", "priority": 1, "app_name": "Stasis", "app_data": appData},
		"creationtime": c.created,
		"language":     "en",
	}
}

type bridge struct {
	id, name, typ string
	members       []string
	created       string
}

func (b *bridge) json() map[string]any {
	return map[string]any{
		"id": b.id, "technology": "simple_bridge", "bridge_type": "mixing", "bridge_class": "stasis",
		"creator": "Stasis", "name": b.name, "channels": b.members, "creationtime": b.created,
		"video_mode": "none",
	}
}

type asterisk struct {
	mu        sync.Mutex
	channels  map[string]*channel
	bridges   map[string]*bridge
	wsPending map[string]*channel
	step      *step
	serial    atomic.Uint64

	evMu    sync.Mutex
	evConns map[*eventConn]struct{}
	// Events that found a full queue (never expected: counted to be sure).
	evDropped atomic.Int64
	stepMu    sync.Mutex // one load step at a time
}

func newAsterisk() *asterisk {
	return &asterisk{
		channels:  map[string]*channel{},
		bridges:   map[string]*bridge{},
		wsPending: map[string]*channel{},
		evConns:   map[*eventConn]struct{}{},
	}
}

func ariTimestamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000+0000") }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func ariError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

var upgrader = websocket.Upgrader{
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
}

// serveARI routes /ari/... the way Asterisk's path tree does for what the gateway uses.
func (a *asterisk) serveARI(w http.ResponseWriter, r *http.Request) {
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/ari"), "/")
	seg := strings.Split(path, "/")
	q := r.URL.Query()
	m := r.Method
	switch {
	case m == "GET" && path == "events":
		a.serveEvents(w, r, q.Get("app"))
	case m == "GET" && path == "channels":
		a.mu.Lock()
		out := make([]any, 0, len(a.channels))
		for _, c := range a.channels {
			out = append(out, c.json())
		}
		a.mu.Unlock()
		writeJSON(w, 200, out)
	case m == "GET" && path == "bridges":
		a.mu.Lock()
		out := make([]any, 0, len(a.bridges))
		for _, b := range a.bridges {
			out = append(out, b.json())
		}
		a.mu.Unlock()
		writeJSON(w, 200, out)
	case m == "POST" && path == "channels/externalMedia":
		a.externalMedia(w, q)
	case m == "GET" && len(seg) == 2 && seg[0] == "channels":
		a.mu.Lock()
		c := a.channels[seg[1]]
		var body map[string]any
		if c != nil {
			body = c.json()
		}
		a.mu.Unlock()
		if c == nil {
			ariError(w, 404, "Channel not found")
			return
		}
		writeJSON(w, 200, body)
	case m == "POST" && (len(seg) == 3 || len(seg) == 4) && seg[0] == "channels" && seg[2] == "snoop":
		snoopID := q.Get("snoopId")
		if len(seg) == 4 {
			snoopID = seg[3]
		}
		a.snoop(w, seg[1], snoopID, q)
	case m == "DELETE" && len(seg) == 2 && seg[0] == "channels":
		a.hangup(w, seg[1])
	case m == "POST" && path == "bridges":
		a.createBridge(w, q)
	case m == "DELETE" && len(seg) == 2 && seg[0] == "bridges":
		a.mu.Lock()
		b := a.bridges[seg[1]]
		delete(a.bridges, seg[1])
		a.mu.Unlock()
		if b == nil {
			ariError(w, 404, "Bridge not found")
			return
		}
		w.WriteHeader(204)
		a.emit(map[string]any{"type": "BridgeDestroyed", "bridge": b.json()})
	case m == "POST" && len(seg) == 3 && seg[0] == "bridges" && seg[2] == "addChannel":
		a.addChannel(w, seg[1], q.Get("channel"))
	case (m == "POST" || m == "DELETE") && len(seg) == 3 && seg[0] == "applications" && seg[2] == "subscription":
		writeJSON(w, 200, map[string]any{
			"name": seg[1], "channel_ids": []string{}, "bridge_ids": []string{},
			"endpoint_ids": []string{}, "device_names": []string{}, "events_allowed": []any{},
			"events_disallowed": []any{},
		})
	default:
		ariError(w, 404, "Invalid method or resource")
	}
}

func (a *asterisk) nextPtr() string { return fmt.Sprintf("%08x", a.serial.Add(1)) }

func (a *asterisk) snoop(w http.ResponseWriter, target, snoopID string, q map[string][]string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	app := get("app")
	if app == "" {
		ariError(w, 400, "app cannot be empty")
		return
	}
	a.mu.Lock()
	t := a.channels[target]
	if t == nil || t.kind != kindCall {
		a.mu.Unlock()
		ariError(w, 404, "Channel not found")
		return
	}
	if snoopID == "" {
		snoopID = fmt.Sprintf("snoop-%s", a.nextPtr())
	}
	s := &channel{
		id: snoopID, name: fmt.Sprintf("Snoop/%s-%s", target, a.nextPtr()), kind: kindSnoop,
		app: app, args: get("appArgs"), created: ariTimestamp(), spied: a.callOf(t),
	}
	a.channels[snoopID] = s
	body := s.json()
	a.mu.Unlock()
	writeJSON(w, 200, body)
	a.stasisStart(s)
}

// callOf returns the load step's call behind a call channel (nil if none).
func (a *asterisk) callOf(c *channel) *call {
	if a.step == nil {
		return nil
	}
	return a.step.callsByID[c.id]
}

func (a *asterisk) stasisStart(c *channel) {
	args := []string{}
	if c.args != "" {
		args = strings.Split(c.args, ",")
	}
	a.emit(map[string]any{"type": "StasisStart", "args": args, "channel": c.json()})
}

func (a *asterisk) createBridge(w http.ResponseWriter, q map[string][]string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	id := get("bridgeId")
	if id == "" {
		id = fmt.Sprintf("bridge-%s", a.nextPtr())
	}
	b := &bridge{id: id, name: get("name"), typ: get("type"), created: ariTimestamp()}
	a.mu.Lock()
	a.bridges[id] = b
	body := b.json()
	a.mu.Unlock()
	writeJSON(w, 200, body)
	a.emit(map[string]any{"type": "BridgeCreated", "bridge": body})
}

func (a *asterisk) addChannel(w http.ResponseWriter, bridgeID, list string) {
	a.mu.Lock()
	b := a.bridges[bridgeID]
	if b == nil {
		a.mu.Unlock()
		ariError(w, 404, "Bridge not found")
		return
	}
	for _, id := range strings.Split(list, ",") {
		if a.channels[id] == nil {
			a.mu.Unlock()
			ariError(w, 400, "Channel not found")
			return
		}
	}
	b.members = append(b.members, strings.Split(list, ",")...)
	// A snoop of a call and an externalMedia channel in one bridge: the call's
	// audio now flows to the external channel, and back (whisper).
	var spied *call
	var ext []*channel
	for _, id := range b.members {
		c := a.channels[id]
		switch {
		case c == nil:
		case c.kind == kindSnoop && c.spied != nil:
			spied = c.spied
		case c.kind == kindExternal && c.call == nil:
			ext = append(ext, c)
		}
	}
	var start []*channel
	if spied != nil {
		for _, e := range ext {
			if e.leg != nil {
				e.call = spied
				start = append(start, e)
			}
		}
	}
	a.mu.Unlock()
	w.WriteHeader(204)
	for _, e := range start {
		e.call.startMedia(e)
	}
}

func (a *asterisk) hangup(w http.ResponseWriter, id string) {
	a.mu.Lock()
	c := a.channels[id]
	if c == nil || c.kind == kindCall {
		a.mu.Unlock()
		// Calls belong to the load generator: the gateway never hangs them up here.
		ariError(w, 404, "Channel not found")
		return
	}
	delete(a.channels, id)
	if c.connID != "" {
		delete(a.wsPending, c.connID)
	}
	a.mu.Unlock()
	c.close()
	w.WriteHeader(204)
	body := c.json()
	a.emit(map[string]any{"type": "StasisEnd", "channel": body})
	a.emit(map[string]any{"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": body})
}

func (c *channel) close() {
	c.closeOnce.Do(func() {
		if c.stopMedia != nil {
			close(c.stopMedia)
		}
		if c.leg != nil {
			c.leg.close()
		}
	})
}

func (a *asterisk) externalMedia(w http.ResponseWriter, q map[string][]string) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	app, format := get("app"), get("format")
	if app == "" {
		ariError(w, 400, "app cannot be empty")
		return
	}
	if format == "" {
		ariError(w, 400, "format cannot be empty")
		return
	}
	encap, transport := get("encapsulation"), get("transport")
	if encap == "" {
		encap = "rtp"
	}
	if transport == "" {
		transport = "udp"
	}
	id := get("channelId")
	if id == "" {
		id = fmt.Sprintf("ext-%s", a.nextPtr())
	}
	host := get("external_host")
	c := &channel{id: id, kind: kindExternal, app: app, args: get("data"), created: ariTimestamp(), stopMedia: make(chan struct{})}
	vars := map[string]string{}
	switch {
	case encap == "rtp" && transport == "udp":
		if format != "ulaw" {
			ariError(w, 400, "the benchmark carries ulaw over RTP only")
			return
		}
		leg, err := newRTPLeg(host)
		if err != nil {
			ariError(w, 400, fmt.Sprintf("external_host must be <host>:<port>: %v", err))
			return
		}
		c.leg = leg
		c.name = fmt.Sprintf("UnicastRTP/%s-%s", host, a.nextPtr())
		vars["UNICASTRTP_LOCAL_ADDRESS"] = "127.0.0.1"
		vars["UNICASTRTP_LOCAL_PORT"] = strconv.Itoa(leg.localPort())
	case encap == "audiosocket" && transport == "tcp":
		if format != "slin" {
			ariError(w, 400, "the benchmark carries slin over AudioSocket only")
			return
		}
		leg, err := dialAudioSocket(host, c.args)
		if err != nil {
			// chan_audiosocket connects inside the request: a failure is a 500.
			ariError(w, 500, fmt.Sprintf("Failed to create channel: %v", err))
			return
		}
		c.leg = leg
		c.name = fmt.Sprintf("AudioSocket/%s-%s", host, c.args)
		vars["AUDIOSOCKET_UUID"] = c.args
		vars["AUDIOSOCKET_SERVICE"] = host
	case encap == "none" && transport == "websocket":
		if get("connection_type") != "server" {
			ariError(w, 400, "the benchmark serves WebSocket channels in server mode only")
			return
		}
		if format != "ulaw" {
			ariError(w, 400, "the benchmark carries ulaw over the WebSocket channel only")
			return
		}
		c.connID = newUUID()
		c.name = fmt.Sprintf("WebSocket/%s/0x%s", c.connID, a.nextPtr())
		vars["MEDIA_WEBSOCKET_CONNECTION_ID"] = c.connID
		vars["MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"] = "160"
	default:
		ariError(w, 400, "The encapsulation and/or transport is not supported")
		return
	}
	a.mu.Lock()
	a.channels[id] = c
	if c.connID != "" {
		a.wsPending[c.connID] = c
	}
	body := c.json()
	a.mu.Unlock()
	body["channelvars"] = vars
	writeJSON(w, 200, body)
	if c.connID == "" {
		// RTP and AudioSocket channels are answered at once and enter Stasis;
		// a WebSocket channel only once its media connection is up.
		a.stasisStart(c)
	}
}

// serveMedia is chan_websocket's /media/{connection_id} endpoint (server mode).
func (a *asterisk) serveMedia(w http.ResponseWriter, r *http.Request) {
	connID := strings.Trim(strings.TrimPrefix(r.URL.Path, "/media/"), "/")
	a.mu.Lock()
	c := a.wsPending[connID]
	if c != nil {
		delete(a.wsPending, connID)
	}
	a.mu.Unlock()
	if c == nil {
		http.Error(w, "Not found", 404)
		return
	}
	up := upgrader
	up.Subprotocols = []string{"media"}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	start, _ := json.Marshal(map[string]any{
		"event": "MEDIA_START", "connection_id": connID, "channel": c.name, "channel_id": c.id,
		"format": "ulaw", "optimal_frame_size": 160, "ptime": 20, "channel_variables": map[string]string{},
	})
	if err := ws.WriteMessage(websocket.TextMessage, start); err != nil {
		ws.Close()
		return
	}
	leg := newWSLeg(ws)
	a.mu.Lock()
	c.leg = leg
	a.mu.Unlock()
	a.stasisStart(c)
}

// --- events ---------------------------------------------------------------------

type eventConn struct {
	app string
	out chan []byte
}

func (a *asterisk) serveEvents(w http.ResponseWriter, r *http.Request, app string) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ec := &eventConn{app: app, out: make(chan []byte, 1<<16)}
	a.evMu.Lock()
	a.evConns[ec] = struct{}{}
	a.evMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
loop:
	for {
		select {
		case msg := <-ec.out:
			if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				break loop
			}
		case <-done:
			break loop
		}
	}
	a.evMu.Lock()
	delete(a.evConns, ec)
	a.evMu.Unlock()
	ws.Close()
}

func (a *asterisk) emit(ev map[string]any) {
	ev["timestamp"] = ariTimestamp()
	ev["asterisk_id"] = "00:00:00:00:be:9c"
	a.evMu.Lock()
	defer a.evMu.Unlock()
	for ec := range a.evConns {
		ev["application"] = ec.app
		msg, err := json.Marshal(ev)
		if err != nil {
			log.Printf("loadgen: event: %v", err)
			continue
		}
		select {
		case ec.out <- msg:
		default:
			a.evDropped.Add(1)
		}
	}
}

// addCalls makes the step's calls exist as channels (in another app).
func (a *asterisk) addCalls(st *step) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.step = st
	for _, c := range st.calls {
		a.channels[c.id] = &channel{id: c.id, name: "PJSIP/" + c.id, kind: kindCall, app: "voipbin", created: ariTimestamp()}
	}
}

// removeCalls forgets the step's calls; returns the gateway's objects still present.
func (a *asterisk) removeCalls(st *step) (channels, bridges int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range st.calls {
		delete(a.channels, c.id)
	}
	a.step = nil
	return len(a.channels), len(a.bridges)
}

func newUUID() string {
	var b [16]byte
	_, _ = randRead(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var _ = net.IPv4len
