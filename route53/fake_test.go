package route53

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRoute53 is a Route 53 PROTOCOL FAKE, served by httptest, because AWS cannot be reached
// from here. It speaks the REST-XML API (2013-04-01) for the four calls the provider makes —
// GetHostedZone, ListResourceRecordSets, ChangeResourceRecordSets, GetChange — parses the
// request XML, applies change batches atomically with Route 53's rules (CREATE of an existing
// set, DELETE of a set that does not match exactly, simple and weighted sets of one name and
// type side by side: all InvalidChangeBatch), keeps every batch it was sent for the tests to
// inspect, and answers PENDING to GetChange a set number of times before INSYNC.
type fakeRoute53 struct {
	t        *testing.T
	srv      *httptest.Server
	zoneID   string
	zoneName string
	keyID    string // the access key requests must be signed with

	mu        sync.Mutex
	sets      []fakeSet
	batches   [][]fakeChange
	pending   int            // GetChange answers PENDING this many times per change, then INSYNC
	polls     map[string]int // change id → GetChange calls so far
	nextID    int
	listCalls int
}

// fakeSet is one resource record set as the fake stores it.
type fakeSet struct {
	Name          string   `xml:"Name"`
	Type          string   `xml:"Type"`
	SetIdentifier string   `xml:"SetIdentifier,omitempty"`
	Weight        *int64   `xml:"Weight,omitempty"`
	TTL           int64    `xml:"TTL,omitempty"`
	Values        []string `xml:"ResourceRecords>ResourceRecord>Value"`
}

func (s fakeSet) key() string { return s.Name + "|" + s.Type + "|" + s.SetIdentifier }

func (s fakeSet) equal(o fakeSet) bool {
	return s.key() == o.key() && s.TTL == o.TTL && slices.Equal(s.Values, o.Values) &&
		(s.Weight == nil) == (o.Weight == nil) && (s.Weight == nil || *s.Weight == *o.Weight)
}

// fakeChange is one change of a batch, as the request XML carried it.
type fakeChange struct {
	Action string  `xml:"Action"`
	Set    fakeSet `xml:"ResourceRecordSet"`
}

const route53NS = "https://route53.amazonaws.com/doc/2013-04-01/"

func newFakeRoute53(t *testing.T, zoneID, zoneName string, sets ...fakeSet) *fakeRoute53 {
	t.Helper()
	f := &fakeRoute53{t: t, zoneID: zoneID, zoneName: zoneName, keyID: "AKIDTEALFAKE", sets: sets, polls: map[string]int{}, pending: 2}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRoute53) serve(w http.ResponseWriter, r *http.Request) {
	// The SDK signs every request with SigV4 using the credentials of the default chain.
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+f.keyID+"/") {
		f.fail(w, http.StatusForbidden, "AccessDenied", "User is not authorized: request not signed with "+f.keyID)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/2013-04-01/")
	if !ok {
		f.fail(w, http.StatusNotFound, "NotFound", "unknown path "+r.URL.Path)
		return
	}
	parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "change" && r.Method == http.MethodGet:
		f.getChange(w, parts[1])
	case len(parts) >= 2 && parts[0] == "hostedzone" && parts[1] != f.zoneID:
		f.fail(w, http.StatusNotFound, "NoSuchHostedZone", "No hosted zone found with ID: "+parts[1])
	case len(parts) == 2 && parts[0] == "hostedzone" && r.Method == http.MethodGet:
		f.getHostedZone(w)
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodGet:
		f.list(w, r)
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodPost:
		f.change(w, r)
	default:
		f.fail(w, http.StatusNotFound, "NotFound", r.Method+" "+r.URL.Path+" is not part of the fake")
	}
}

func (f *fakeRoute53) fail(w http.ResponseWriter, status int, code, msg string) {
	type errorBody struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	f.write(w, status, struct {
		XMLName   xml.Name  `xml:"ErrorResponse"`
		NS        string    `xml:"xmlns,attr"`
		Error     errorBody `xml:"Error"`
		RequestID string    `xml:"RequestId"`
	}{NS: route53NS, Error: errorBody{Type: "Sender", Code: code, Message: msg}, RequestID: "fake-request"})
}

func (f *fakeRoute53) write(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		f.t.Errorf("fake route53: marshal answer: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", "fake-request")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

type changeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
}

func (f *fakeRoute53) getHostedZone(w http.ResponseWriter) {
	type zone struct {
		ID              string `xml:"Id"`
		Name            string `xml:"Name"`
		CallerReference string `xml:"CallerReference"`
		Count           int    `xml:"ResourceRecordSetCount"`
	}
	f.mu.Lock()
	n := len(f.sets)
	f.mu.Unlock()
	f.write(w, http.StatusOK, struct {
		XMLName     xml.Name `xml:"GetHostedZoneResponse"`
		NS          string   `xml:"xmlns,attr"`
		Zone        zone     `xml:"HostedZone"`
		NameServers []string `xml:"DelegationSet>NameServers>NameServer"`
	}{NS: route53NS, Zone: zone{ID: "/hostedzone/" + f.zoneID, Name: f.zoneName, CallerReference: "fake", Count: n},
		NameServers: []string{"ns-1.awsdns-fake.com", "ns-2.awsdns-fake.net"}})
}

// list answers ListResourceRecordSets: the sets in name, type, identifier order, from the
// start name on, one page.
func (f *fakeRoute53) list(w http.ResponseWriter, r *http.Request) {
	start := r.URL.Query().Get("name")
	f.mu.Lock()
	f.listCalls++
	sets := slices.Clone(f.sets)
	f.mu.Unlock()
	slices.SortFunc(sets, func(a, b fakeSet) int { return strings.Compare(a.key(), b.key()) })
	var out []fakeSet
	for _, s := range sets {
		if s.Name >= start {
			out = append(out, s)
		}
	}
	f.write(w, http.StatusOK, struct {
		XMLName     xml.Name  `xml:"ListResourceRecordSetsResponse"`
		NS          string    `xml:"xmlns,attr"`
		Sets        []fakeSet `xml:"ResourceRecordSets>ResourceRecordSet"`
		IsTruncated bool      `xml:"IsTruncated"`
		MaxItems    string    `xml:"MaxItems"`
	}{NS: route53NS, Sets: out, MaxItems: "300"})
}

// change applies one ChangeResourceRecordSets batch, all or nothing.
func (f *fakeRoute53) change(w http.ResponseWriter, r *http.Request) {
	var req struct {
		XMLName xml.Name     `xml:"ChangeResourceRecordSetsRequest"`
		Comment string       `xml:"ChangeBatch>Comment"`
		Changes []fakeChange `xml:"ChangeBatch>Changes>Change"`
	}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = xml.Unmarshal(body, &req)
	}
	if err != nil || req.XMLName.Space != route53NS {
		f.fail(w, http.StatusBadRequest, "InvalidInput", fmt.Sprintf("request XML: %v (namespace %q)", err, req.XMLName.Space))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, req.Changes)
	sets := slices.Clone(f.sets)
	var problems []string
	for _, c := range req.Changes {
		s := c.Set
		if !strings.HasSuffix(s.Name, "."+f.zoneName) && s.Name != f.zoneName {
			problems = append(problems, fmt.Sprintf("RRSet with DNS name %s is not permitted in zone %s", s.Name, f.zoneName))
			continue
		}
		i := slices.IndexFunc(sets, func(o fakeSet) bool { return o.key() == s.key() })
		switch c.Action {
		case "CREATE", "UPSERT":
			if c.Action == "CREATE" && i >= 0 {
				problems = append(problems, fmt.Sprintf("Tried to create resource record set [name='%s', type='%s'] but it already exists", s.Name, s.Type))
				continue
			}
			if i >= 0 {
				sets[i] = s
			} else {
				sets = append(sets, s)
			}
		case "DELETE":
			if i < 0 || !sets[i].equal(s) {
				problems = append(problems, fmt.Sprintf("Tried to delete resource record set [name='%s', type='%s', set-identifier='%s'] but it was not found or the values provided do not match", s.Name, s.Type, s.SetIdentifier))
				continue
			}
			sets = slices.Delete(sets, i, i+1)
		default:
			problems = append(problems, "unknown action "+c.Action)
		}
	}
	// Simple and weighted sets of one name and type cannot live side by side.
	for _, a := range sets {
		for _, b := range sets {
			if a.Name == b.Name && a.Type == b.Type && (a.SetIdentifier == "") != (b.SetIdentifier == "") {
				problems = append(problems, fmt.Sprintf("RRSet of type %s with DNS name %s is not permitted because a conflicting RRSet of type %s with the same DNS name already exists", a.Type, a.Name, b.Type))
			}
		}
	}
	if len(problems) > 0 {
		f.fail(w, http.StatusBadRequest, "InvalidChangeBatch", strings.Join(problems, "; "))
		return
	}
	f.sets = sets
	f.nextID++
	id := fmt.Sprintf("C%04dFAKE", f.nextID)
	f.polls[id] = 0
	f.write(w, http.StatusOK, struct {
		XMLName xml.Name   `xml:"ChangeResourceRecordSetsResponse"`
		NS      string     `xml:"xmlns,attr"`
		Info    changeInfo `xml:"ChangeInfo"`
	}{NS: route53NS, Info: changeInfo{ID: "/change/" + id, Status: "PENDING", SubmittedAt: time.Now().UTC().Format(time.RFC3339)}})
}

func (f *fakeRoute53) getChange(w http.ResponseWriter, id string) {
	f.mu.Lock()
	n, ok := f.polls[id]
	if ok {
		f.polls[id] = n + 1
	}
	status := "PENDING"
	if n >= f.pending {
		status = "INSYNC"
	}
	f.mu.Unlock()
	if !ok {
		f.fail(w, http.StatusNotFound, "NoSuchChange", "A change with the specified change ID does not exist: "+id)
		return
	}
	f.write(w, http.StatusOK, struct {
		XMLName xml.Name   `xml:"GetChangeResponse"`
		NS      string     `xml:"xmlns,attr"`
		Info    changeInfo `xml:"ChangeInfo"`
	}{NS: route53NS, Info: changeInfo{ID: "/change/" + id, Status: status, SubmittedAt: time.Now().UTC().Format(time.RFC3339)}})
}

// Batches returns every batch received so far.
func (f *fakeRoute53) Batches() [][]fakeChange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// Sets returns the stored record sets, sorted.
func (f *fakeRoute53) Sets() []fakeSet {
	f.mu.Lock()
	defer f.mu.Unlock()
	sets := slices.Clone(f.sets)
	slices.SortFunc(sets, func(a, b fakeSet) int { return strings.Compare(a.key(), b.key()) })
	return sets
}

// Polls returns how many times GetChange was asked about the change with id.
func (f *fakeRoute53) Polls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[id]
}

// Replace swaps the stored sets, the way a change in the AWS console would.
func (f *fakeRoute53) Replace(sets ...fakeSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = sets
}
