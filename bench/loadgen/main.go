// Command loadgen is the load generator of the whole-path benchmark.
//
// It plays both ends of the mediastream gateway at once:
//
//   - Asterisk's side: ARI REST (/ari/...), the ARI events WebSocket
//     (/ari/events), and externalMedia media over RTP/UDP, AudioSocket/TCP or
//     the WebSocket channel (/media/{connection_id}), answering every call the
//     gateway makes exactly as Asterisk does, but cheaply enough for thousands
//     of calls;
//   - the clients: bidirectional StreamMedia gRPC streams, or (client "shim")
//     WebSocket clients of the gateway's VoIPBIN media_stream endpoint (shim.go).
//
// Every call sends one 20 ms ulaw frame every 20 ms carrying its stream number,
// a sequence number and its send time; every client sends the same back, one
// chunk every chunk_ms (a shim client: one 20 ms slin frame per message). Both ends check every frame they get and measure the
// latency the gateway added.
//
// It runs as a server for the Python driver (bench/run.py): it prints one JSON
// line {"event":"ready",...} and then runs one load step per POST /bench/step,
// answering with NDJSON progress lines and the step's result. It exits when its
// standard input closes, so it never outlives the driver.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address of the ARI/media/control HTTP server (loopback only)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("loadgen: --listen must be a loopback address, got %q", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("loadgen: %v", err)
	}
	ast := newAsterisk()
	mux := http.NewServeMux()
	mux.HandleFunc("/ari/", ast.serveARI)
	mux.HandleFunc("/media/", ast.serveMedia)
	mux.HandleFunc("/bench/step", ast.serveStep)
	mux.Handle("/debug/pprof/", http.DefaultServeMux) // go tool pprof http://<addr>/debug/pprof/profile
	addr := ln.Addr().String()
	ready, _ := json.Marshal(map[string]any{
		"event":   "ready",
		"ari_url": fmt.Sprintf("http://%s/ari", addr),
		"control": fmt.Sprintf("http://%s/bench/step", addr),
		"pid":     os.Getpid(),
	})
	fmt.Println(string(ready))
	go func() {
		// The driver holds our stdin: when it goes away, so do we.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	srv := &http.Server{Handler: mux}
	log.Fatal(srv.Serve(ln))
}
