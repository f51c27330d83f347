// Package route53 switches a DNS record in an Amazon Route 53 hosted zone: the DNS provider
// "route53". Every switch is one ChangeResourceRecordSets batch holding every change it needs,
// waited on until Route 53 reports it INSYNC on all its name servers. With dns.weighted the
// record is a pair of weighted record sets, "blue" and "green", so weighted steps and rollback
// are re-weighting; otherwise it is one simple record set.
package route53

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"

	"teal.dev/teal"
)

// Defaults of a Switcher's exported fields.
const (
	// DefaultSyncTimeout bounds the wait for a change to be INSYNC; Route 53 normally takes
	// under a minute.
	DefaultSyncTimeout = 5 * time.Minute
	// DefaultPollInterval is how often GetChange is asked while a change is PENDING.
	DefaultPollInterval = 5 * time.Second
)

// Switcher changes the record in a Route 53 hosted zone. It implements teal.DNS.
type Switcher struct {
	// Logger receives every change; nil discards them.
	Logger *slog.Logger
	// SyncTimeout bounds the wait for INSYNC after a change. = DefaultSyncTimeout.
	SyncTimeout time.Duration
	// PollInterval is the delay between GetChange calls while waiting. = DefaultPollInterval.
	PollInterval time.Duration

	cfg    teal.DNSConfig
	zone   string // lower-case, fully qualified
	rec    string
	client *r53.Client
}

var _ teal.DNS = (*Switcher)(nil)
var _ teal.DNSTTLSetter = (*Switcher)(nil)

// Set identifiers of the weighted record sets, one per colour.
const (
	blueID  = "blue"
	greenID = "green"
)

// NewSwitcher returns a Switcher for cfg (provider route53). It calls nothing until Open.
func NewSwitcher(cfg teal.DNSConfig) *Switcher {
	return &Switcher{
		SyncTimeout:  DefaultSyncTimeout,
		PollInterval: DefaultPollInterval,
		cfg:          cfg,
		zone:         canonicalName(cfg.Zone),
		rec:          canonicalName(cfg.Record),
	}
}

// Open loads AWS credentials from the default chain (environment, shared files, SSO, instance
// role …) for dns.route53.region, and makes the client; dns.route53.endpoint, when set,
// replaces the AWS endpoint.
func (s *Switcher) Open(ctx context.Context) error {
	c := s.cfg.Route53
	if c.HostedZoneID == "" || c.Region == "" {
		return fmt.Errorf("open route53: dns.route53.hosted_zone_id and region are required: %w", teal.ErrInvalid)
	}
	if s.zone == "" || !strings.HasSuffix(s.rec, "."+s.zone) && s.rec != s.zone {
		return fmt.Errorf("open route53: dns.record %s is not inside zone %s: %w", s.cfg.Record, s.cfg.Zone, teal.ErrInvalid)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(c.Region))
	if err != nil {
		return fmt.Errorf("open route53: load AWS configuration: %w", err)
	}
	s.client = r53.NewFromConfig(awsCfg, func(o *r53.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
	return nil
}

// Close releases nothing: the SDK's client holds no resources that need closing. It exists
// for the lifecycle every provider shares.
func (s *Switcher) Close() error { return nil }

// Check reads the hosted zone (its name must be dns.zone) and the record's current record
// sets: the credentials work, the zone is the one configured, and teal can read what it is
// about to change. Record sets of the name that teal does not own are an error.
func (s *Switcher) Check(ctx context.Context) error {
	if s.client == nil {
		return errors.New("check dns: route53 switcher not opened")
	}
	if _, err := s.cfg.Answers(teal.All(teal.Blue), nil); err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	id := s.cfg.Route53.HostedZoneID
	out, err := s.client.GetHostedZone(ctx, &r53.GetHostedZoneInput{Id: aws.String(id)})
	if err != nil {
		return fmt.Errorf("check dns: route53 GetHostedZone %s: %w", id, explain(err))
	}
	if got := canonicalName(aws.ToString(out.HostedZone.Name)); got != s.zone {
		return fmt.Errorf("check dns: hosted zone %s is %s, not dns.zone %s: %w", id, got, s.zone, teal.ErrInvalid)
	}
	sets, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	if err := s.foreign(sets); err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	return nil
}

// Set makes the record answer for traffic t with the configured TTL; see SetTTL.
func (s *Switcher) Set(ctx context.Context, t teal.Traffic, prev *teal.DNSState) (*teal.DNSState, error) {
	return s.SetTTL(ctx, t, s.cfg.TTL, prev)
}

// SetTTL makes the record answer for traffic t with ttl, in one ChangeResourceRecordSets
// batch, then waits until Route 53 says the change is INSYNC. With Weighted the batch UPSERTs
// both weighted record sets with the shares as weights; otherwise it UPSERTs one simple record
// set. Record sets of the other shape (left by an earlier configuration) are deleted in the
// same batch, so the switch is one atomic change.
//
// Route 53 has no prerequisites, so the compare is done just before the change: when the
// record no longer answers prev's values (someone changed it), the error wraps
// teal.ErrConflict and nothing is changed.
func (s *Switcher) SetTTL(ctx context.Context, t teal.Traffic, ttl time.Duration, prev *teal.DNSState) (*teal.DNSState, error) {
	if s.client == nil {
		return nil, errors.New("set dns record: route53 switcher not opened")
	}
	targets, err := s.cfg.Answers(t, prev)
	if err != nil {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
	}
	sets, err := s.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
	}
	if err := s.foreign(sets); err != nil {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
	}
	if prev != nil && len(prev.Values) > 0 {
		if now := answering(sets); !slices.Equal(now, sortedCopy(prev.Values)) {
			return nil, fmt.Errorf("set dns record %s in zone %s: record changed outside teal: expected %s, it answers %s; check who changed it, then set it back or accept it: %w",
				s.rec, s.cfg.Route53.HostedZoneID, describe(prev.Values), describe(now), teal.ErrConflict)
		}
		if err := weightsHeld(sets, prev.Traffic); err != nil {
			return nil, fmt.Errorf("set dns record %s in zone %s: record changed outside teal: %w: %w",
				s.rec, s.cfg.Route53.HostedZoneID, err, teal.ErrConflict)
		}
	}

	secs := int64(teal.TTLSeconds(ttl))
	rtype := r53types.RRType(teal.DNSRecordType(targets[0].Value))
	var changes []r53types.Change
	if s.cfg.Weighted {
		for _, c := range teal.Colors {
			changes = append(changes, upsert(&r53types.ResourceRecordSet{
				Name:            aws.String(s.rec),
				Type:            rtype,
				SetIdentifier:   aws.String(string(c)),
				Weight:          aws.Int64(int64(t.Of(c))),
				TTL:             aws.Int64(secs),
				ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(teal.CanonicalDNSValue(s.cfg.Targets[c]))}},
			}))
		}
	} else {
		changes = append(changes, upsert(&r53types.ResourceRecordSet{
			Name:            aws.String(s.rec),
			Type:            rtype,
			TTL:             aws.Int64(secs),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(targets[0].Value)}},
		}))
	}
	for _, set := range sets {
		weighted := set.SetIdentifier != nil
		// Sets of the other shape, or of the other type, would clash with the new ones.
		if weighted != s.cfg.Weighted || set.Type != rtype {
			del := set
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: &del})
		}
	}

	id := s.cfg.Route53.HostedZoneID
	out, err := s.client.ChangeResourceRecordSets(ctx, &r53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(id),
		ChangeBatch: &r53types.ChangeBatch{
			Comment: aws.String(fmt.Sprintf("teal: %s blue %d%% green %d%%", s.rec, t.Blue, t.Green)),
			Changes: changes,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("set dns record %s: route53 ChangeResourceRecordSets on zone %s: %w", s.rec, id, explain(err))
	}
	change := aws.ToString(out.ChangeInfo.Id)
	s.logger().Info("dns change submitted", "record", s.rec, "zone", id, "change", change,
		"values", teal.DNSValues(targets), "blue", t.Blue, "green", t.Green, "ttl", secs)

	if out.ChangeInfo.Status != r53types.ChangeStatusInsync {
		w := r53.NewResourceRecordSetsChangedWaiter(s.client, func(o *r53.ResourceRecordSetsChangedWaiterOptions) {
			o.MinDelay = s.PollInterval
			o.MaxDelay = max(s.PollInterval, 30*time.Second)
		})
		if err := w.Wait(ctx, &r53.GetChangeInput{Id: aws.String(change)}, s.SyncTimeout); err != nil {
			return nil, fmt.Errorf("set dns record %s: route53 GetChange %s: not INSYNC within %s: %w", s.rec, change, s.SyncTimeout, explain(err))
		}
	}
	return &teal.DNSState{Traffic: t, Values: teal.DNSValues(targets), TTL: uint32(secs), Changed: time.Now().UTC()}, nil
}

func upsert(set *r53types.ResourceRecordSet) r53types.Change {
	return r53types.Change{Action: r53types.ChangeActionUpsert, ResourceRecordSet: set}
}

// current lists the record sets of the record's name, of every type.
func (s *Switcher) current(ctx context.Context) ([]r53types.ResourceRecordSet, error) {
	id := s.cfg.Route53.HostedZoneID
	in := &r53.ListResourceRecordSetsInput{HostedZoneId: aws.String(id), StartRecordName: aws.String(s.rec)}
	var sets []r53types.ResourceRecordSet
	for {
		out, err := s.client.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("route53 ListResourceRecordSets %s in zone %s: %w", s.rec, id, explain(err))
		}
		for _, set := range out.ResourceRecordSets {
			// The listing starts at the name and goes on in DNS order: the first other
			// name ends it.
			if canonicalName(aws.ToString(set.Name)) != s.rec {
				return sets, nil
			}
			switch set.Type {
			case r53types.RRTypeA, r53types.RRTypeAaaa, r53types.RRTypeCname:
				sets = append(sets, set)
			}
		}
		if !out.IsTruncated {
			return sets, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = out.NextRecordName, out.NextRecordType, out.NextRecordIdentifier
	}
}

// foreign refuses record sets of the name that teal did not make and would not replace: alias
// records and weighted sets with other identifiers. Changing the record under them would
// leave traffic going where teal cannot see.
func (s *Switcher) foreign(sets []r53types.ResourceRecordSet) error {
	var bad []string
	for _, set := range sets {
		id := aws.ToString(set.SetIdentifier)
		switch {
		case set.AliasTarget != nil:
			bad = append(bad, fmt.Sprintf("%s alias to %s", set.Type, aws.ToString(set.AliasTarget.DNSName)))
		case set.SetIdentifier != nil && id != blueID && id != greenID:
			bad = append(bad, fmt.Sprintf("%s set %q", set.Type, id))
		case set.SetIdentifier != nil && set.Weight == nil:
			bad = append(bad, fmt.Sprintf("%s set %q with a routing policy other than weighted", set.Type, id))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s has record sets teal does not manage (%s): remove them, or use another record", s.rec, strings.Join(bad, "; "))
	}
	return nil
}

// answering is the values resolvers get from sets, sorted: every value of a simple set; of
// weighted sets those with weight over 0 (all of them when every weight is 0, as Route 53
// does).
func answering(sets []r53types.ResourceRecordSet) []string {
	anyWeight := false
	for _, set := range sets {
		if aws.ToInt64(set.Weight) > 0 {
			anyWeight = true
		}
	}
	var vs []string
	for _, set := range sets {
		if set.Weight != nil && anyWeight && *set.Weight == 0 {
			continue
		}
		for _, rr := range set.ResourceRecords {
			vs = append(vs, teal.CanonicalDNSValue(aws.ToString(rr.Value)))
		}
	}
	slices.Sort(vs)
	return vs
}

// weightsHeld checks that weighted sets still carry the shares of traffic t.
func weightsHeld(sets []r53types.ResourceRecordSet, t teal.Traffic) error {
	for _, set := range sets {
		if set.Weight == nil {
			continue
		}
		c := teal.Color(aws.ToString(set.SetIdentifier))
		if want := int64(t.Of(c)); *set.Weight != want {
			return fmt.Errorf("set %q has weight %d, expected %d", c, *set.Weight, want)
		}
	}
	return nil
}

func sortedCopy(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = teal.CanonicalDNSValue(v)
	}
	slices.Sort(out)
	return out
}

func describe(values []string) string {
	if len(values) == 0 {
		return "nothing"
	}
	return strings.Join(values, ", ")
}

// explain shortens an AWS API error to its code and message, which say what to fix
// (AccessDenied, NoSuchHostedZone, InvalidChangeBatch …); the SDK's error stays wrapped.
func explain(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		return &apiError{msg: api.ErrorCode() + ": " + api.ErrorMessage(), err: err}
	}
	return err
}

// apiError is an AWS API error with a short message.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// canonicalName lower-cases a name and makes it fully qualified. Route 53 writes some
// characters in names as octal escapes (\052 for *); teal's names have none of them.
func canonicalName(s string) string {
	if s == "" {
		return ""
	}
	return teal.CanonicalDNSValue(s)
}

func (s *Switcher) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
