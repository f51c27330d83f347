// Command benchdb measures teal's database step on two throwaway PostgreSQL clusters, a
// production and a preproduction one (bench/db.sh runs it):
//
//   - clone time of a pgbench-generated database (≥ 1 GB at the default scale) by each of
//     teal's clone strategies, against `pg_dump -Fd -j2` then `pg_restore -j2` into a fresh
//     database;
//   - the freeze window of switchovers back and forth between the two colours while pgbench
//     writes to the live colour as its own role (p50/p99).
//
// It prints a markdown table and, with -doc, writes it into the Database section of
// docs/benchmarks.md with a dated line in the section's history.
//
//	benchdb -scale 70 -switches 20 -doc docs/benchmarks.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdb:", err)
		os.Exit(1)
	}
}

// run parses the flags, runs the benchmark and reports it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchdb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := defaultOptions()
	fs.IntVar(&o.Scale, "scale", o.Scale, "pgbench scale of the generated production database (70 ≈ 1 GB)")
	fs.IntVar(&o.Switches, "switches", o.Switches, "switchovers measured under load, alternating blue → green and back")
	fs.IntVar(&o.Clients, "clients", o.Clients, "pgbench clients (-c) writing during the switchovers")
	fs.IntVar(&o.Threads, "threads", o.Threads, "pgbench threads (-j)")
	fs.DurationVar(&o.Hold, "hold", o.Hold, "load before each switchover, once pgbench is writing")
	fs.StringVar(&o.Strategies, "strategies", o.Strategies, "teal's clone strategies to time, comma-separated")
	fs.StringVar(&o.Doc, "doc", "", "write the result into the Database section of this markdown `file` (docs/benchmarks.md)")
	fs.BoolVar(&o.Verbose, "v", false, "log teal's own progress too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.validate(); err != nil {
		return err
	}
	b := &bench{opts: o, stderr: stderr, log: slog.New(slog.DiscardHandler)}
	if o.Verbose {
		b.log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	table, line := render(res)
	fmt.Fprint(stdout, table)
	if o.Doc == "" {
		return nil
	}
	if err := writeDoc(o.Doc, table, line); err != nil {
		return err
	}
	b.say("wrote %s", o.Doc)
	return nil
}

// options are benchdb's flags.
type options struct {
	Scale      int
	Switches   int
	Clients    int
	Threads    int
	Hold       time.Duration
	Strategies string
	Doc        string
	Verbose    bool
}

// Defaults of the flags: the figures the issue asks for (a ≥ 1 GB database, 20 switchovers).
const (
	DefaultScale      = 70
	DefaultSwitches   = 20
	DefaultClients    = 4
	DefaultThreads    = 2
	DefaultHold       = 3 * time.Second
	DefaultStrategies = "subscription,dump"
)

func defaultOptions() options {
	return options{
		Scale:      DefaultScale,
		Switches:   DefaultSwitches,
		Clients:    DefaultClients,
		Threads:    DefaultThreads,
		Hold:       DefaultHold,
		Strategies: DefaultStrategies,
	}
}

func (o options) validate() error {
	switch {
	case o.Scale < 1:
		return fmt.Errorf("-scale %d: want 1 or more", o.Scale)
	case o.Switches < 0:
		return fmt.Errorf("-switches %d: want 0 or more", o.Switches)
	case o.Clients < 1 || o.Threads < 1 || o.Threads > o.Clients:
		return fmt.Errorf("-clients %d -threads %d: want 1 ≤ threads ≤ clients", o.Clients, o.Threads)
	case o.Hold <= 0:
		return fmt.Errorf("-hold %v: want more than 0", o.Hold)
	}
	for _, s := range o.strategies() {
		if s != "subscription" && s != "dump" {
			return fmt.Errorf("-strategies: %q: want subscription or dump", s)
		}
	}
	return nil
}
