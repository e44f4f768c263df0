// Command nativerelay is the baseline relay of bench/baseline_relay.py written
// in Go: StreamMedia over gRPC <-> externalMedia RTP, with nothing else. The
// benchmark runs it (bench/run.py --native-relay) to show what a native media
// path would cost per stream on the same machine and the same load.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"flag"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
	"google.golang.org/grpc"
)

const (
	frameBytes = 160
	period     = 20 * time.Millisecond
)

type relay struct {
	pb.UnimplementedMediaStreamServiceServer
	ari  string
	http *http.Client
}

func (r *relay) call(method, path string, params url.Values) (map[string]any, error) {
	u := r.ari + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, _ := http.NewRequest(method, u, nil)
	req.SetBasicAuth("asterisk", "asterisk")
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		return nil, fmt.Errorf("ARI %s %s: %d %s", method, path, resp.StatusCode, body)
	}
	var out map[string]any
	if len(body) > 0 {
		_ = json.Unmarshal(body, &out)
	}
	return out, nil
}

func uuid() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	binary.BigEndian.PutUint64(b[8:], rand.Uint64())
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (r *relay) StreamMedia(stream pb.MediaStreamService_StreamMediaServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	cfg := first.GetConfig()
	chunkMs := int(cfg.GetChunkMs())
	if chunkMs == 0 {
		chunkMs = 20
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer conn.Close()
	bridge, snoop, ext := uuid(), uuid(), uuid()
	var made []string
	defer func() {
		for i := len(made) - 1; i >= 0; i-- {
			_, _ = r.call("DELETE", made[i], nil)
		}
	}()
	if _, err := r.call("POST", "/bridges", url.Values{"type": {"mixing"}, "bridgeId": {bridge}}); err != nil {
		return err
	}
	made = append(made, "/bridges/"+bridge)
	if _, err := r.call("POST", "/channels/"+cfg.GetCallId()+"/snoop", url.Values{
		"spy": {"both"}, "whisper": {"both"}, "app": {"native"}, "snoopId": {snoop}}); err != nil {
		return err
	}
	made = append(made, "/channels/"+snoop)
	ch, err := r.call("POST", "/channels/externalMedia", url.Values{
		"app": {"native"}, "format": {"ulaw"}, "channelId": {ext}, "encapsulation": {"rtp"},
		"transport": {"udp"}, "external_host": {conn.LocalAddr().String()}})
	if err != nil {
		return err
	}
	made = append(made, "/channels/"+ext)
	vars, _ := ch["channelvars"].(map[string]any)
	remote, err := net.ResolveUDPAddr("udp", fmt.Sprintf("%v:%v", vars["UNICASTRTP_LOCAL_ADDRESS"], vars["UNICASTRTP_LOCAL_PORT"]))
	if err != nil {
		return err
	}
	if _, err := r.call("POST", "/bridges/"+bridge+"/addChannel", url.Values{"channel": {snoop + "," + ext}}); err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(m *pb.StreamMediaResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Started{Started: &pb.StreamStarted{
		StreamId: ext, Format: pb.AudioFormat_AUDIO_FORMAT_ULAW, SampleRateHz: 8000,
		FrameBytes: frameBytes, ChunkMs: uint32(chunkMs)}}}); err != nil {
		return err
	}
	// Downlink: RTP payloads joined into chunks.
	go func() {
		buf := make([]byte, 2048)
		chunk := make([]byte, 0, frameBytes*chunkMs/20)
		var seq uint64
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			chunk = append(chunk, buf[12:n]...)
			if len(chunk) >= cap(chunk) {
				data := make([]byte, len(chunk))
				copy(data, chunk)
				chunk = chunk[:0]
				_ = send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Audio{Audio: &pb.AudioChunk{
					Data: data, SequenceNumber: seq, Timestamp: seq * uint64(8*chunkMs)}}})
				seq++
			}
		}
	}()
	// Uplink: frames paced out one per 20 ms, never faster than real time.
	frames := make(chan []byte, 2000)
	played := make(chan struct{})
	go func() {
		defer close(played)
		pkt := make([]byte, 12+frameBytes)
		rtpSeq, ts, ssrc := uint16(rand.Uint32()), rand.Uint32(), rand.Uint32()
		var next time.Time
		for f := range frames {
			if now := time.Now(); next.Before(now) {
				next = now
			}
			time.Sleep(time.Until(next))
			pkt[0], pkt[1] = 0x80, 0
			binary.BigEndian.PutUint16(pkt[2:], rtpSeq)
			binary.BigEndian.PutUint32(pkt[4:], ts)
			binary.BigEndian.PutUint32(pkt[8:], ssrc)
			copy(pkt[12:], f)
			_, _ = conn.WriteToUDP(pkt, remote)
			rtpSeq++
			ts += frameBytes
			next = next.Add(period)
		}
	}()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			close(frames)
			return err
		}
		if a := req.GetAudio(); a != nil {
			for d := a.Data; len(d) >= frameBytes; d = d[frameBytes:] {
				frames <- d[:frameBytes]
			}
		}
	}
	close(frames)
	<-played
	return send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Stopped{Stopped: &pb.StreamStopped{
		Reason: pb.StopReason_STOP_REASON_CLIENT_DONE, Detail: "input played"}}})
}

func main() {
	ari := flag.String("ari-url", "", "ARI base URL")
	listen := flag.String("grpc-listen", "127.0.0.1:0", "gRPC address (loopback)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMediaStreamServiceServer(srv, &relay{ari: *ari, http: &http.Client{
		Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}})
	ready, _ := json.Marshal(map[string]string{"event": "ready", "grpc": ln.Addr().String()})
	fmt.Println(string(ready))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; srv.Stop(); os.Exit(0) }()
	log.Fatal(srv.Serve(ln))
}
