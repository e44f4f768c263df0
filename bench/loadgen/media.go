package main

// Media: the test frames, G.711 mu-law, and the three externalMedia legs.

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

var randRead = rand.Read

const (
	frameBytes = 160 // 20 ms of 8 kHz ulaw
	frameNs    = int64(20 * time.Millisecond)
	dirDown    = 1 // call -> client
	dirUp      = 2 // client -> call
	recordLen  = 20
	magic0     = 'M'
	magic1     = 'S'
)

// record is what every test frame carries.
type record struct {
	dir    byte
	stream uint32 // the call's number in the step
	seq    uint32 // frame number in its direction, from 0
	k      byte   // index of the frame in its chunk (uplink)
	sendNs int64  // when it was sent, ns since the step's start
}

// encodeFrame writes r into a 160-byte ulaw frame. Each record byte becomes two
// ulaw codes 0x20+nibble, which survive ulaw->slin->ulaw exactly (the
// AudioSocket leg carries slin); the rest is ulaw silence.
func encodeFrame(dst []byte, r record) {
	var raw [recordLen]byte
	raw[0], raw[1], raw[2] = magic0, magic1, r.dir
	binary.BigEndian.PutUint32(raw[3:], r.stream)
	binary.BigEndian.PutUint32(raw[7:], r.seq)
	raw[11] = r.k
	binary.BigEndian.PutUint64(raw[12:], uint64(r.sendNs))
	for i, b := range raw {
		dst[2*i] = 0x20 | b>>4
		dst[2*i+1] = 0x20 | b&0x0f
	}
	for i := 2 * recordLen; i < frameBytes; i++ {
		dst[i] = 0xff
	}
}

func decodeFrame(src []byte) (record, bool) {
	if len(src) != frameBytes {
		return record{}, false
	}
	var raw [recordLen]byte
	for i := range raw {
		hi, lo := src[2*i], src[2*i+1]
		if hi&0xf0 != 0x20 || lo&0xf0 != 0x20 {
			return record{}, false
		}
		raw[i] = hi<<4 | lo&0x0f
	}
	if raw[0] != magic0 || raw[1] != magic1 {
		return record{}, false
	}
	return record{
		dir:    raw[2],
		stream: binary.BigEndian.Uint32(raw[3:]),
		seq:    binary.BigEndian.Uint32(raw[7:]),
		k:      raw[11],
		sendNs: int64(binary.BigEndian.Uint64(raw[12:])),
	}, true
}

// G.711 mu-law, as the gateway's core/g711.py (standard tables).
var (
	ulawToLinear [256]int16
	linearToUlaw = map[int16]byte{}
)

func init() {
	for i := 0; i < 256; i++ {
		u := ^byte(i)
		exponent := (u >> 4) & 0x07
		mantissa := int(u & 0x0f)
		sample := ((mantissa << 3) + 0x84) << exponent
		sample -= 0x84
		if u&0x80 != 0 {
			sample = -sample
		}
		ulawToLinear[i] = int16(sample)
	}
	for i := 255; i >= 0; i-- { // 0xFF wins over 0x7F for zero
		if _, ok := linearToUlaw[ulawToLinear[i]]; !ok || i == 0xff {
			linearToUlaw[ulawToLinear[i]] = byte(i)
		}
	}
	_ = bits.Len
}

// slinFromUlaw writes 16-bit little-endian samples.
func slinFromUlaw(dst, src []byte) {
	for i, u := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], uint16(ulawToLinear[u]))
	}
}

// ulawFromSlin converts exact mu-law sample values back; false on any other value.
func ulawFromSlin(dst, src []byte) bool {
	for i := range dst {
		u, ok := linearToUlaw[int16(binary.LittleEndian.Uint16(src[2*i:]))]
		if !ok {
			return false
		}
		dst[i] = u
	}
	return true
}

// mediaLeg is one externalMedia channel's media connection, Asterisk's end.
type mediaLeg interface {
	// send one 20 ms ulaw frame towards the gateway (converted as the leg needs).
	send(frame []byte) error
	// run reads frames from the gateway until the leg closes, calling got with ulaw.
	run(got func(frame []byte))
	close()
}

// --- RTP ---------------------------------------------------------------------------

type rtpLeg struct {
	conn   *net.UDPConn
	remote *net.UDPAddr
	seq    uint16
	ts     uint32
	ssrc   uint32
	buf    []byte
}

func newRTPLeg(externalHost string) (*rtpLeg, error) {
	remote, err := net.ResolveUDPAddr("udp", externalHost)
	if err != nil || remote.Port == 0 {
		return nil, fmt.Errorf("bad external_host %q", externalHost)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	var seed [8]byte
	_, _ = randRead(seed[:])
	return &rtpLeg{
		conn: conn, remote: remote,
		seq: binary.BigEndian.Uint16(seed[0:]), ts: binary.BigEndian.Uint32(seed[2:]),
		ssrc: binary.BigEndian.Uint32(seed[4:]) | 1, buf: make([]byte, 12+frameBytes),
	}, nil
}

func (l *rtpLeg) localPort() int { return l.conn.LocalAddr().(*net.UDPAddr).Port }

func (l *rtpLeg) send(frame []byte) error {
	b := l.buf
	b[0], b[1] = 0x80, 0 // V=2, PT 0 (ulaw)
	binary.BigEndian.PutUint16(b[2:], l.seq)
	binary.BigEndian.PutUint32(b[4:], l.ts)
	binary.BigEndian.PutUint32(b[8:], l.ssrc)
	copy(b[12:], frame)
	l.seq++
	l.ts += frameBytes
	_, err := l.conn.WriteToUDP(b, l.remote)
	return err
}

func (l *rtpLeg) run(got func([]byte)) {
	buf := make([]byte, 2048)
	for {
		n, from, err := l.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		// Asterisk's strict RTP: only the address it sends to is accepted at once.
		if from.Port != l.remote.Port || n < 12 || buf[0]>>6 != 2 {
			continue
		}
		off := 12 + 4*int(buf[0]&0x0f)
		if off > n {
			continue
		}
		got(buf[off:n])
	}
}

// close lets the socket read what is already queued in it first: a gateway
// deletes the channel right after sending its last frame, and Asterisk would
// still play that frame.
func (l *rtpLeg) close() {
	time.AfterFunc(500*time.Millisecond, func() { _ = l.conn.Close() })
}

// --- AudioSocket -------------------------------------------------------------------

type audioSocketLeg struct {
	conn net.Conn
	buf  []byte
	mu   sync.Mutex
}

// dialAudioSocket connects the way chan_audiosocket does inside the ARI
// request: a 2 s connect, then the UUID message.
func dialAudioSocket(externalHost, id string) (*audioSocketLeg, error) {
	u, err := parseUUID(id)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", externalHost, 2*time.Second)
	if err != nil {
		return nil, err
	}
	msg := append([]byte{0x01, 0x00, 0x10}, u[:]...)
	if _, err := conn.Write(msg); err != nil {
		conn.Close()
		return nil, err
	}
	return &audioSocketLeg{conn: conn, buf: make([]byte, 3+2*frameBytes)}, nil
}

func (l *audioSocketLeg) send(frame []byte) error {
	b := l.buf
	b[0] = 0x10
	binary.BigEndian.PutUint16(b[1:], 2*frameBytes)
	slinFromUlaw(b[3:], frame)
	// One write per message: Asterisk wants whole headers (see §2.4).
	_, err := l.conn.Write(b)
	return err
}

func (l *audioSocketLeg) run(got func([]byte)) {
	r := bufio.NewReaderSize(l.conn, 64<<10)
	var hdr [3]byte
	payload := make([]byte, 65536)
	ulaw := make([]byte, frameBytes)
	bad := make([]byte, frameBytes) // an undecodable frame (counted as bad)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[1:]))
		if _, err := io.ReadFull(r, payload[:n]); err != nil {
			return
		}
		switch hdr[0] {
		case 0x00:
			return
		case 0x10:
			p := payload[:n]
			for len(p) > 0 {
				m := min(len(p), 2*frameBytes)
				if m == 2*frameBytes && allZero(p[:m]) {
					// The gateway's keep-fed silence (server/mediastream/asterisk/audiosocket.py):
					// sent when nothing else was for 40 ms, as on a loaded machine when a
					// client's frame comes late. Every frame the load generator sends is
					// stamped, so an all-zero frame is never one of them.
					p = p[m:]
					continue
				}
				if m == 2*frameBytes && ulawFromSlin(ulaw, p[:m]) {
					got(ulaw)
				} else {
					got(bad[:m/2])
				}
				p = p[m:]
			}
		}
	}
}

func (l *audioSocketLeg) close() { _ = l.conn.Close() }

// allZero reports whether b holds only zero bytes (a frame of slin silence).
func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	if len(hex) != 32 {
		return u, errors.New("data must be a UUID")
	}
	for i := 0; i < 16; i++ {
		var v byte
		for _, c := range hex[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			default:
				return u, errors.New("data must be a UUID")
			}
		}
		u[i] = v
	}
	return u, nil
}

// --- WebSocket channel ---------------------------------------------------------------

type wsLeg struct {
	ws *websocket.Conn
	mu sync.Mutex
}

func newWSLeg(ws *websocket.Conn) *wsLeg { return &wsLeg{ws: ws} }

func (l *wsLeg) send(frame []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ws.WriteMessage(websocket.BinaryMessage, frame)
}

func (l *wsLeg) run(got func([]byte)) {
	for {
		typ, data, err := l.ws.ReadMessage()
		if err != nil {
			return
		}
		if typ != websocket.BinaryMessage {
			continue
		}
		// chan_websocket cuts what it gets into optimal_frame_size frames.
		for len(data) > 0 {
			m := min(len(data), frameBytes)
			got(data[:m])
			data = data[m:]
		}
	}
}

func (l *wsLeg) close() {
	l.mu.Lock()
	_ = l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	l.mu.Unlock()
	_ = l.ws.Close()
}
