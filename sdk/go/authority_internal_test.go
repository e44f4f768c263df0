package mediastream

import "testing"

func TestInstancesKeepTheDialledAuthority(t *testing.T) {
	for target, want := range map[string]string{
		"gw.example:50051":        "gw.example:50051",
		"dns:///gw.example:50051": "gw.example:50051",
		"[::1]:50051":             "[::1]:50051",
	} {
		if got := authorityOf(target); got != want {
			t.Errorf("authorityOf(%q) = %q, want %q", target, got, want)
		}
	}
}
