package auth

import (
	"encoding/base64"
	"net/http"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseBasic(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		user, pass string
		ok         bool
	}{
		{"std", "Basic " + base64.StdEncoding.EncodeToString([]byte("site:key")), "site", "key", true},
		{"lower scheme", "basic " + base64.StdEncoding.EncodeToString([]byte("site:key")), "site", "key", true},
		{"upper scheme", "BASIC " + base64.StdEncoding.EncodeToString([]byte("site:key")), "site", "key", true},
		{"go client url-safe", "Basic YWJjOj4-Pj8_Pw==", "abc", ">>>???", true},
		{"std form of the same", "Basic YWJjOj4+Pj8/Pw==", "abc", ">>>???", true},
		{"raw url", "Basic YWJjOj4-Pj8_Pw", "abc", ">>>???", true},
		{"raw std", "Basic YWJjOj4+Pj8/Pw", "abc", ">>>???", true},
		{"colon in password", "Basic " + base64.StdEncoding.EncodeToString([]byte("s:k:x")), "s", "k:x", true},
		{"empty password", "Basic " + base64.StdEncoding.EncodeToString([]byte("s:")), "s", "", true},
		{"extra spaces", "Basic   " + base64.StdEncoding.EncodeToString([]byte("s:k")) + " ", "s", "k", true},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("sitekey")), "", "", false},
		{"bearer", "Bearer abc", "", "", false},
		{"empty", "", "", "", false},
		{"scheme only", "Basic ", "", "", false},
		{"garbage", "Basic !!!!", "", "", false},
		{"mixed alphabets", "Basic YWJjOj4-Pj8/Pw==", "", "", false},
		{"too long", "Basic " + base64.StdEncoding.EncodeToString(make([]byte, 2000)), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p, ok := ParseBasic(tt.header)
			if u != tt.user || p != tt.pass || ok != tt.ok {
				t.Errorf("ParseBasic(%q) = %q, %q, %v; want %q, %q, %v", tt.header, u, p, ok, tt.user, tt.pass, tt.ok)
			}
		})
	}
}

func TestGoClientEncoding(t *testing.T) {
	// go-customerio encodes with base64.URLEncoding.
	h := "Basic " + base64.URLEncoding.EncodeToString([]byte("abc:>>>???"))
	if h != "Basic YWJjOj4-Pj8_Pw==" {
		t.Fatalf("encoding = %q", h)
	}
	d, err := NewDirectory([]Workspace{{SiteID: "abc", APIKey: ">>>???"}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", h)
	if _, ok := d.Authenticate(r); !ok {
		t.Fatal("URL-safe credentials rejected")
	}
	// Go's own parser rejects it; that is why we decode ourselves.
	if _, _, ok := r.BasicAuth(); ok {
		t.Log("net/http now accepts URL-safe base64")
	}
}

func TestAuthenticate(t *testing.T) {
	d, err := NewDirectory([]Workspace{
		{SiteID: "site1", APIKey: "key1", Region: "us"},
		{SiteID: "site2", APIKey: "key2", Region: "eu"},
	})
	if err != nil {
		t.Fatal(err)
	}
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		header string
		want   Workspace
		ok     bool
	}{
		{"site1", basic("site1:key1"), Workspace{"site1", "key1", "us"}, true},
		{"site2", basic("site2:key2"), Workspace{"site2", "key2", "eu"}, true},
		{"wrong key", basic("site1:key2"), Workspace{}, false},
		{"key prefix", basic("site1:key"), Workspace{}, false},
		{"key longer", basic("site1:key11"), Workspace{}, false},
		{"unknown site", basic("site3:key1"), Workspace{}, false},
		{"empty", "", Workspace{}, false},
		{"empty creds", basic(":"), Workspace{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			got, ok := d.Authenticate(r)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("workspace (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReplace(t *testing.T) {
	d, err := NewDirectory([]Workspace{{SiteID: "a", APIKey: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Replace([]Workspace{{SiteID: "", APIKey: "x"}, {SiteID: "b", APIKey: ""}, {SiteID: "c:d", APIKey: "k"}, {SiteID: "e", APIKey: "k"}, {SiteID: "e", APIKey: "k"}})
	if err == nil {
		t.Fatal("invalid set accepted")
	}
	if _, ok := d.Check("a", "1"); !ok {
		t.Fatal("a failed replace changed the directory")
	}
	if err := d.Replace([]Workspace{{SiteID: "b", APIKey: "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Check("a", "1"); ok {
		t.Error("old workspace still valid")
	}
	if _, ok := d.Check("b", "2"); !ok {
		t.Error("new workspace not valid")
	}
	if diff := cmp.Diff([]Workspace{{SiteID: "b", APIKey: "2"}}, d.Workspaces()); diff != "" {
		t.Error(diff)
	}
}

func TestConcurrentReplace(t *testing.T) {
	d, _ := NewDirectory([]Workspace{{SiteID: "a", APIKey: "1"}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := d.Check("a", "1"); !ok {
					t.Error("a rejected during reloads")
					return
				}
			}
		}()
	}
	for i := 0; i < 1000; i++ {
		if err := d.Replace([]Workspace{{SiteID: "a", APIKey: "1"}, {SiteID: "b", APIKey: "2"}}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkAuthenticate(b *testing.B) {
	d, _ := NewDirectory([]Workspace{{SiteID: "46be54768e7d49ab2628", APIKey: "0123456789abcdef0123"}})
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Basic "+base64.URLEncoding.EncodeToString([]byte("46be54768e7d49ab2628:0123456789abcdef0123")))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := d.Authenticate(r); !ok {
			b.Fatal("rejected")
		}
	}
}
