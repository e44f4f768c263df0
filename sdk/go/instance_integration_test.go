package mediastream_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/gatewaytest"
)

// advertisingGateways starts n gateways of their own, each advertising its
// own gRPC address (--advertise-address), stopped when t ends.
func advertisingGateways(t *testing.T, n int) []*gatewaytest.Gateway {
	t.Helper()
	gws := make([]*gatewaytest.Gateway, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The advertised address is needed up front, so a free port is picked
			// and let go before the gateway binds it; on a busy machine another
			// process may take it in between: then try a fresh one.
			for attempt := 0; attempt < 3; attempt++ {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					errs[i] = err
					return
				}
				addr := lis.Addr().String()
				lis.Close()
				gws[i], errs[i] = gatewaytest.StartOwn("--grpc-listen", addr, "--advertise-address", addr, "--drain-timeout-s", "1")
				if errs[i] == nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, gw := range gws {
		if gw != nil {
			t.Cleanup(func() { gw.Stop() })
		}
	}
	for _, err := range errs {
		if err != nil {
			t.Fatalf("starting a gateway: %v", err)
		}
	}
	return gws
}

func dialAt(t *testing.T, addr string, opts ...mediastream.DialOption) *mediastream.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// firstAudio returns the first audio chunk of a stream.
func firstAudio(t *testing.T, s *mediastream.Stream) mediastream.AudioChunk {
	t.Helper()
	for {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := ev.(mediastream.AudioChunk); ok {
			return a
		}
	}
}

// Two real gateways, each advertising its address: the second stands in for
// the load-balanced address, where a resume of a stream held by the first
// lands.
func TestGatewayResumeReachesTheAdvertisedInstance(t *testing.T) {
	gws := advertisingGateways(t, 2)
	holder, other := gws[0], gws[1]
	ctx := testContext(t)
	cfg := mediastream.Config{CallID: holder.Demo["tone_call"], Format: mediastream.FormatSLIN, Resumable: true}

	stream, err := dialAt(t, holder.GRPC).Listen(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.Info().InstanceAddress; got != holder.GRPC {
		t.Fatalf("Info().InstanceAddress = %q, want the advertised %q", got, holder.GRPC)
	}
	for range 5 {
		firstAudio(t, stream)
	}
	resume := stream.ResumeFrom()
	if resume.InstanceAddress != holder.GRPC || resume.LastSequenceNumber == nil {
		t.Fatalf("ResumeFrom() = %+v, want the instance address %q and a sequence number", resume, holder.GRPC)
	}
	stream.Close() // the client vanishes; the stream waits for a resume

	// A client of the "load balancer" sends the resume to the holder itself.
	client := dialAt(t, other.GRPC, mediastream.WithAllowedInstances(holder.GRPC))
	cfg.Resume = resume
	resumed, err := client.Listen(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	info := resumed.Info()
	if !info.Resumed || info.StreamID != stream.Info().StreamID || info.InstanceAddress != holder.GRPC {
		t.Fatalf("Info() = %+v, want stream %s resumed on %s", info, stream.Info().StreamID, holder.GRPC)
	}
	if a := firstAudio(t, resumed); a.SequenceNumber != *resume.LastSequenceNumber+1 {
		t.Errorf("the resumed stream continues at chunk %d, want %d", a.SequenceNumber, *resume.LastSequenceNumber+1)
	}
	resumed.Close()

	// Without the address the resume reaches the other instance, which names
	// the holder (RESUME_WRONG_INSTANCE); the client follows it, as it allows that address.
	cfg.Resume = resumed.ResumeFrom()
	cfg.Resume.InstanceAddress = ""
	again, err := client.Listen(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if info := again.Info(); !info.Resumed || info.StreamID != stream.Info().StreamID || info.InstanceAddress != holder.GRPC {
		t.Fatalf("Info() = %+v, want stream %s resumed on %s", info, stream.Info().StreamID, holder.GRPC)
	}
	firstAudio(t, again)
}
