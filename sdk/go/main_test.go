package mediastream_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/gatewaytest"
)

var (
	gatewayOnce sync.Once
	gateway     *gatewaytest.Gateway
	gatewayErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if gateway != nil {
		if err := gateway.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the gateway:", err)
		}
	}
	os.Exit(code)
}

// realGateway returns the one gateway of this test run, starting it on first use.
func realGateway(t *testing.T) *gatewaytest.Gateway {
	t.Helper()
	gatewayOnce.Do(func() { gateway, gatewayErr = gatewaytest.Start() })
	if gatewayErr != nil {
		t.Fatalf("starting the gateway: %v", gatewayErr)
	}
	return gateway
}

// dialGateway connects to the real gateway; the client is closed when t ends.
func dialGateway(t *testing.T) (*mediastream.Client, *gatewaytest.Gateway) {
	t.Helper()
	gw := realGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, gw.GRPC)
	if err != nil {
		t.Fatalf("Dial(%s): %v", gw.GRPC, err)
	}
	t.Cleanup(func() { client.Close() })
	return client, gw
}
