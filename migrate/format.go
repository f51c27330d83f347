package migrate

import (
	"fmt"
	"io"
	"strings"
)

// FormatPlan writes p the way `teal db plan` prints it: what is applied, then each pending
// file with its label; held-back and refused files with, for every statement that is not
// safe, the reason and the fix. withSQL adds every statement's SQL with its label and reason.
func FormatPlan(w io.Writer, p *Plan, withSQL bool) error {
	pw := &printer{w: w}
	if n := len(p.Applied); n == 0 {
		pw.printf("Applied: none\n")
	} else {
		last := p.Applied[n-1]
		name := last.Name
		if name == "" {
			name = fmt.Sprintf("version %d", last.Version)
		}
		pw.printf("Applied: %d, the latest %s", n, name)
		if !last.AppliedAt.IsZero() && last.AppliedAt.Unix() != 0 {
			pw.printf(" at %s", last.AppliedAt.UTC().Format("2006-01-02 15:04:05Z"))
		}
		if last.Actor != "" {
			pw.printf(" by %s", last.Actor)
		}
		if last.ReleaseID != 0 {
			pw.printf(" (release %d)", last.ReleaseID)
		}
		pw.printf("\n")
	}
	if len(p.Pending)+len(p.HeldBack)+len(p.Refused) == 0 {
		pw.printf("Nothing to run.\n")
		return pw.err
	}
	section := func(title string, files []Migration, explain bool) {
		if len(files) == 0 {
			return
		}
		pw.printf("\n%s\n", title)
		for _, f := range files {
			pw.printf("  %s  [%s]%s\n", f.Name, f.Label, noTx(f))
			for _, s := range f.Statements {
				switch {
				case withSQL:
					pw.printf("%s\n", indent(s.SQL, "      "))
					pw.printf("        -> %s: %s\n", s.Label, s.Reason)
				case explain && s.Label != Safe:
					pw.printf("      %s\n        -> %s: %s\n", brief(s.SQL), s.Label, s.Reason)
				default:
					continue
				}
				if s.Fix != "" && s.Label != Safe {
					pw.printf("           fix: %s\n", s.Fix)
				}
			}
		}
	}
	section(fmt.Sprintf("Pending (%d), to run now:", len(p.Pending)), p.Pending, false)
	section(fmt.Sprintf("Held back (%d), to run after the switch, once the old colour is gone:", len(p.HeldBack)), p.HeldBack, true)
	section(fmt.Sprintf("Refused (%d): they break replication, so the release would be refused:", len(p.Refused)), p.Refused, true)
	return pw.err
}

func noTx(f Migration) string {
	if f.NoTransaction {
		return " (no transaction)"
	}
	return ""
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// printer keeps the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
