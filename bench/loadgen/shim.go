package main

// The shim clients: instead of StreamMedia gRPC streams, N WebSocket clients of
// the gateway's VoIPBIN-compatible endpoint (server/mediastream/shim,
// docs/websocket.md): GET /v1.0/calls/{id}/media_stream?encapsulation=sln|rtp.
//
// A client asks for VoIPBIN's default formats (no format parameter: mu-law
// down, 16-bit 8 kHz slin up) and for the JSON control channel (events=json),
// which gives what the gRPC client has: a "started" message before the audio,
// "done" to half-close (the gateway plays what it holds, then stops with
// client_done), and a "stopped" message with the reason. The shim always sends
// one 20 ms frame per binary message; the client sends one 20 ms frame per
// message back, paced by itself (the gateway's pacer plays at real time).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
)

const (
	shimRTPHeaderLen = 12
	shimRTPType      = 0x60 // marker 0, payload type 96: VoIPBIN's, for every format
)

var shimEncapsulations = map[string]bool{"sln": true, "rtp": true}

// shimURL is the media_stream address of one call on the shim at addr (host:port).
func shimURL(addr, callID, encapsulation string) string {
	q := url.Values{"encapsulation": {encapsulation}, "events": {"json"}}
	return fmt.Sprintf("ws://%s/v1.0/calls/%s/media_stream?%s", addr, url.PathEscape(callID), q.Encode())
}

// callUUID is a call's channel ID: the shim accepts UUIDs only (as VoIPBIN does).
func callUUID(stamp int64, idx int) string {
	return fmt.Sprintf("%08x-be9c-4000-8000-%012x", uint32(stamp), uint64(idx))
}

// shimRTPCheck follows the RTP headers of one stream's downlink: version 2,
// payload type 96, one SSRC, sequence number 1 and timestamp 0 first, then the
// timestamp advancing 160 samples per sequence number (a gap is a loss, which
// the frames' own sequence numbers count; going back is bad).
type shimRTPCheck struct {
	n    int
	seq  uint16
	ts   uint32
	ssrc uint32
}

// payload returns the packet's payload and whether its header is right.
func (k *shimRTPCheck) payload(pkt []byte) ([]byte, bool) {
	if len(pkt) < shimRTPHeaderLen || pkt[0] != 0x80 || pkt[1] != shimRTPType {
		return nil, false
	}
	seq := binary.BigEndian.Uint16(pkt[2:])
	ts := binary.BigEndian.Uint32(pkt[4:])
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	var ok bool
	if k.n == 0 {
		ok = seq == 1 && ts == 0
	} else {
		dSeq := seq - k.seq
		ok = ssrc == k.ssrc && dSeq >= 1 && dSeq < 1<<15 && ts-k.ts == uint32(dSeq)*frameBytes
	}
	if !ok {
		return nil, false
	}
	k.n++
	k.seq, k.ts, k.ssrc = seq, ts, ssrc
	return pkt[shimRTPHeaderLen:], true
}

// putShimRTPHeader writes the header of uplink packet number n (from 0) of a
// stream, numbered as the gateway numbers its own: sequence n+1, timestamp 160 n.
func putShimRTPHeader(dst []byte, n uint32, ssrc uint32) {
	dst[0], dst[1] = 0x80, shimRTPType
	binary.BigEndian.PutUint16(dst[2:], uint16(n+1))
	binary.BigEndian.PutUint32(dst[4:], n*frameBytes)
	binary.BigEndian.PutUint32(dst[8:], ssrc)
}

// shimControl is a control message of the shim (events=json).
type shimControl struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
	Message string `json:"message"`
	ChunkMs int    `json:"chunk_ms"`
}

func newShimDialer() *websocket.Dialer {
	// No proxy (the zero Dialer's), whatever the environment says: the gateway is on loopback.
	return &websocket.Dialer{HandshakeTimeout: 15 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}
}

func (c *call) runShimClient(ctx context.Context, dialer *websocket.Dialer) {
	defer close(c.ended)
	st := c.st
	ws, resp, err := dialer.DialContext(ctx, shimURL(st.cfg.WS, c.id, st.cfg.Encapsulation), nil)
	if err != nil {
		if resp != nil {
			// Refused before the upgrade: VoIPBIN's JSON error envelope.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		c.err = err
		return
	}
	defer ws.Close()
	typ, data, err := ws.ReadMessage()
	if err != nil {
		c.err = err
		return
	}
	var msg shimControl
	if typ != websocket.TextMessage || json.Unmarshal(data, &msg) != nil || msg.Type != "started" {
		c.err = fmt.Errorf("first message is not started: %.120q", data)
		return
	}
	if msg.ChunkMs != 20 {
		c.err = fmt.Errorf("started says chunk_ms %d, the benchmark expects 20", msg.ChunkMs)
		return
	}
	c.started.Store(true)
	readDone := make(chan struct{})
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		c.sendUpShim(ws, readDone)
	}()
	var rtp shimRTPCheck
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			// The gateway closes with 1000 once the stream stopped normally.
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) && c.err == nil {
				c.err = err
			}
			break
		}
		switch typ {
		case websocket.BinaryMessage:
			if st.cfg.Encapsulation == "rtp" {
				payload, ok := rtp.payload(data)
				if !ok {
					c.downBad.Add(1)
					continue
				}
				data = payload
			}
			c.gotDown(data)
		case websocket.TextMessage:
			msg = shimControl{}
			if json.Unmarshal(data, &msg) != nil {
				c.err = fmt.Errorf("text message is not JSON: %.120q", data)
				continue
			}
			switch msg.Type {
			case "stopped":
				c.stopReason = msg.Reason
			case "error":
				c.err = fmt.Errorf("error %s: %s", msg.Reason, msg.Message)
			}
		}
	}
	close(readDone)
	<-sendDone
}

// sendUpShim sends one 20 ms frame every 20 ms, slin (VoIPBIN's uplink format)
// in the step's encapsulation, then "done" when the step stops.
func (c *call) sendUpShim(ws *websocket.Conn, readDone <-chan struct{}) {
	st := c.st
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	off := 0
	if st.cfg.Encapsulation == "rtp" {
		off = shimRTPHeaderLen
	}
	var seed [4]byte
	_, _ = randRead(seed[:])
	ssrc := binary.BigEndian.Uint32(seed[:])
	frame := make([]byte, frameBytes)
	msg := make([]byte, off+2*frameBytes)
	var seq uint32
	for {
		select {
		case <-st.stopUp:
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"done"}`))
			return
		case <-readDone:
			return
		case <-t.C:
		}
		now := st.now()
		encodeFrame(frame, record{dir: dirUp, stream: c.idx, seq: seq, sendNs: now})
		slinFromUlaw(msg[off:], frame)
		if off > 0 {
			putShimRTPHeader(msg, seq, ssrc)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			return
		}
		seq++
		c.upSent.Add(1)
		if st.inWindow(now) {
			c.upSentWin.Add(1)
		}
	}
}
