package format

import (
	"fmt"
	"strconv"
	"strings"
)

// KindDecision tags a rename transaction's decision (FORMAT.md §5.5).
const KindDecision Kind = 'T'

// Outcome is what a rename transaction's decision says.
type Outcome byte

// Decision outcomes.
const (
	Commit Outcome = 1 // every pending entry of the transaction applies
	Abort  Outcome = 2 // none does
)

func (o Outcome) String() string {
	switch o {
	case Commit:
		return "commit"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("outcome(%d)", byte(o))
}

// MaxDecisionDirs bounds the directories a decision lists (source,
// destination and a replaced directory).
const MaxDecisionDirs = 3

// Decision is the payload of t/<txid>: created once, first create wins.
type Decision struct {
	Outcome Outcome
	Host    uint64   // the renaming host (its pending entries' host)
	Writer  uint64   // who wrote the decision
	Dirs    []uint64 // directories holding the transaction's pending entries (all of them for a commit)
}

// DecisionsPrefix is the common prefix of every decision.
func (k Keys) DecisionsPrefix() string { return k.prefix + "t/" }

// Decision is the key of transaction txid's decision.
func (k Keys) Decision(txid uint64) string { return fmt.Sprintf("%st/%016x", k.prefix, txid) }

// ParseDecision parses a key made by Decision.
func (k Keys) ParseDecision(key string) (uint64, error) {
	rest, ok := strings.CutPrefix(key, k.prefix+"t/")
	if ok && len(rest) == 16 {
		if tx, err := strconv.ParseUint(rest, 16, 64); err == nil && tx != 0 && k.Decision(tx) == key {
			return tx, nil
		}
	}
	return 0, fmt.Errorf("%w: %q is not a decision key", ErrCorrupt, key)
}

// Validate checks a decision's fields.
func (d *Decision) Validate() error {
	if d.Outcome != Commit && d.Outcome != Abort {
		return fmt.Errorf("%w: decision with outcome %d", ErrCorrupt, d.Outcome)
	}
	if d.Host == 0 || d.Writer == 0 || len(d.Dirs) > MaxDecisionDirs {
		return fmt.Errorf("%w: decision fields out of range", ErrCorrupt)
	}
	for _, id := range d.Dirs {
		if id == 0 {
			return fmt.Errorf("%w: decision lists directory 0", ErrCorrupt)
		}
	}
	return nil
}

// EncodeDecision validates d and returns the sealed object.
func EncodeDecision(d *Decision) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var e encoder
	e.u8(byte(d.Outcome))
	e.u64(d.Host)
	e.u64(d.Writer)
	e.uvarint(uint64(len(d.Dirs)))
	for _, id := range d.Dirs {
		e.u64(id)
	}
	return Seal(KindDecision, e.b), nil
}

// DecodeDecision opens and validates a decision object.
func DecodeDecision(obj []byte) (*Decision, error) {
	b, err := Open(KindDecision, obj)
	if err != nil {
		return nil, err
	}
	dec := decoder{b: b}
	d := &Decision{Outcome: Outcome(dec.u8("outcome")), Host: dec.u64("host"), Writer: dec.u64("writer")}
	n := dec.uvarintMax("dir count", MaxDecisionDirs)
	for i := uint64(0); i < n && dec.err == nil; i++ {
		d.Dirs = append(d.Dirs, dec.u64("dir"))
	}
	if err := dec.end("decision"); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// DirState is a directory's entry list at one version: its committed
// entries and its pending ones (FORMAT.md §5.4, §5.5).
type DirState struct {
	Committed map[string]Entry // name -> put
	Pending   map[string]Entry // name -> pending put or remove
	// Delete is the pending delete (op 5) of the version last applied,
	// if it holds one (it is not carried into the next version).
	Delete *Entry
}

// NewDirState returns an empty state.
func NewDirState() *DirState {
	return &DirState{Committed: map[string]Entry{}, Pending: map[string]Entry{}}
}

// Clone copies s.
func (s *DirState) Clone() *DirState {
	c := &DirState{Committed: make(map[string]Entry, len(s.Committed)), Pending: make(map[string]Entry, len(s.Pending)), Delete: s.Delete}
	for k, v := range s.Committed {
		c.Committed[k] = v
	}
	for k, v := range s.Pending {
		c.Pending[k] = v
	}
	return c
}

// Apply applies the entries of one directory version (full: s must be
// empty; delta: s is the state at the version before). It refuses what
// §5.4 calls corrupt.
func (s *DirState) Apply(es []Entry) error {
	s.Delete = nil
	for i := range es {
		e := es[i]
		switch e.Op {
		case EntryPut:
			s.Committed[e.Name] = e
			delete(s.Pending, e.Name)
		case EntryRemove:
			delete(s.Committed, e.Name)
			delete(s.Pending, e.Name)
		case EntryPendingPut, EntryPendingRemove:
			if _, ok := s.Pending[e.Name]; ok {
				return fmt.Errorf("%w: a second pending entry for %q", ErrCorrupt, e.Name)
			}
			s.Pending[e.Name] = e
		case EntryPendingDelete:
			if i != len(es)-1 || len(s.Committed) > 0 || len(s.Pending) > 0 {
				return fmt.Errorf("%w: a pending delete not last, or of a directory that is not empty", ErrCorrupt)
			}
			s.Delete = &es[i]
		}
	}
	for name, p := range s.Pending {
		if _, ok := s.Committed[name]; p.Op == EntryPendingRemove && !ok {
			return fmt.Errorf("%w: a pending remove of %q, which has no entry", ErrCorrupt, name)
		}
	}
	return nil
}

// Txids returns the transactions whose pending entries es holds.
func Txids(es []Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		if e.Op.Pending() {
			out = append(out, e.Tx)
		}
	}
	return out
}
