package luks2

import (
	"crypto/pbkdf2"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/crypto/argon2"
)

// PBKDF selects the password-based key derivation of a keyslot. The zero
// value means "cryptsetup-like defaults": argon2id, memory 1 GiB capped at
// half the RAM, min(4, NumCPU) threads, passes calibrated by Benchmark to
// about DefaultIterTime. A PBKDF with Type set but a cost left at zero gets
// that cost filled the same way.
type PBKDF struct {
	// Type is "argon2id", "argon2i" or "pbkdf2".
	Type string
	// Time is the number of argon2 passes (cryptsetup's "Time cost",
	// --pbkdf-force-iterations for argon2). At least 4 for new keyslots.
	Time int
	// Iterations is the pbkdf2 iteration count (at least 1000).
	Iterations int
	// MemoryKiB is the argon2 memory cost in KiB (32 .. 4 Mi).
	MemoryKiB int
	// Threads is the argon2 parallelism (1 .. 16; cryptsetup "Threads").
	Threads int
	// Hash is the pbkdf2 hash: "sha256" (default), "sha512" or "sha1".
	Hash string
}

const (
	// DefaultIterTime is how long a keyslot derivation takes with default
	// parameters, as in cryptsetup (--iter-time 2000).
	DefaultIterTime = 2 * time.Second
	// digestIterTime is the pbkdf2 time for the volume key digest
	// (cryptsetup uses 1/8 s, at least 1000 iterations).
	digestIterTime = 125 * time.Millisecond

	defaultArgonMemoryKiB = 1 << 20 // 1 GiB
	maxDefaultThreads     = 4
	minArgonTime          = 4
	minPBKDF2Iterations   = 1000
)

// String describes the parameters (never key material).
func (p PBKDF) String() string {
	if p.Type == "pbkdf2" {
		return fmt.Sprintf("pbkdf2-%s iterations=%d", p.Hash, p.Iterations)
	}
	return fmt.Sprintf("%s time=%d memory=%dKiB threads=%d", p.Type, p.Time, p.MemoryKiB, p.Threads)
}

// validate checks explicit parameters for a new keyslot.
func (p PBKDF) validate() error {
	switch p.Type {
	case "pbkdf2":
		if _, err := hashByName(p.Hash); err != nil {
			return fmt.Errorf("%w: pbkdf2 hash %q (use sha256, sha512 or sha1)", ErrInvalidOptions, p.Hash)
		}
		if p.Iterations < minPBKDF2Iterations || p.Iterations > maxKDFIterations {
			return fmt.Errorf("%w: pbkdf2 iterations %d (need %d or more)", ErrInvalidOptions, p.Iterations, minPBKDF2Iterations)
		}
	case "argon2id", "argon2i":
		if p.Time < minArgonTime || p.Time > maxKDFIterations {
			return fmt.Errorf("%w: %s time %d (need %d or more)", ErrInvalidOptions, p.Type, p.Time, minArgonTime)
		}
		if p.MemoryKiB < minArgonMemoryKiB || p.MemoryKiB > maxArgonMemoryKiB {
			return fmt.Errorf("%w: %s memory %d KiB (allowed %d .. %d)", ErrInvalidOptions, p.Type, p.MemoryKiB, minArgonMemoryKiB, maxArgonMemoryKiB)
		}
		if p.Threads < 1 || p.Threads > maxArgonThreads {
			return fmt.Errorf("%w: %s threads %d (allowed 1 .. %d)", ErrInvalidOptions, p.Type, p.Threads, maxArgonThreads)
		}
	default:
		return fmt.Errorf("%w: PBKDF type %q (use argon2id, argon2i or pbkdf2)", ErrInvalidOptions, p.Type)
	}
	return nil
}

// resolve fills unset costs of p (benchmarking if needed) and validates it.
func (p PBKDF) resolve() (PBKDF, error) {
	if p.Type == "" {
		p.Type = "argon2id"
	}
	if p.Type == "pbkdf2" && p.Hash == "" {
		p.Hash = "sha256"
	}
	var err error
	switch p.Type {
	case "pbkdf2":
		if p.Iterations == 0 {
			p, err = Benchmark(p, DefaultIterTime)
		}
	case "argon2id", "argon2i":
		if p.Time == 0 {
			p, err = Benchmark(p, DefaultIterTime)
		} else {
			p = p.withArgonDefaults()
		}
	}
	if err != nil {
		return p, err
	}
	return p, p.validate()
}

// withArgonDefaults fills unset argon2 memory and threads.
func (p PBKDF) withArgonDefaults() PBKDF {
	if p.MemoryKiB == 0 {
		p.MemoryKiB = defaultArgonMemoryKiB
		if half := totalRAMKiB() / 2; half > 0 && half < int64(p.MemoryKiB) {
			p.MemoryKiB = int(max(half, minArgonMemoryKiB))
		}
	}
	if p.Threads == 0 {
		p.Threads = min(maxDefaultThreads, runtime.NumCPU())
	}
	return p
}

// Benchmark returns p with its unset cost (argon2 Time, or pbkdf2
// Iterations) chosen so that one derivation takes about target on this
// machine, like cryptsetup's PBKDF benchmark. Unset argon2 memory and
// threads get the defaults first; if even the minimum of 4 passes takes
// much longer than target, the memory is halved (down to 64 MiB) as
// cryptsetup does. It runs the KDF a few times, so it takes roughly target
// or a little more; call it once and reuse the result for many keyslots.
func Benchmark(p PBKDF, target time.Duration) (PBKDF, error) {
	if p.Type == "" {
		p.Type = "argon2id"
	}
	pass := []byte("benchmark passphrase")
	salt := make([]byte, 32)
	switch p.Type {
	case "pbkdf2":
		if p.Hash == "" {
			p.Hash = "sha256"
		}
		if p.Iterations != 0 {
			return p, p.validate()
		}
		const probe = 20000
		t := PBKDF{Type: "pbkdf2", Hash: p.Hash, Iterations: probe}
		start := time.Now()
		if _, err := deriveKey(t, pass, salt, 32); err != nil {
			return p, err
		}
		el := max(time.Since(start), time.Microsecond)
		p.Iterations = max(minPBKDF2Iterations, int(float64(probe)*float64(target)/float64(el)))
		p.Iterations = min(p.Iterations, maxKDFIterations)
	case "argon2id", "argon2i":
		p = p.withArgonDefaults()
		if p.Time != 0 {
			return p, p.validate()
		}
		for {
			t := p
			t.Time = 1
			start := time.Now()
			if _, err := deriveKey(t, pass, salt, 32); err != nil {
				return p, err
			}
			el := max(time.Since(start), time.Microsecond)
			if el*minArgonTime > target && p.MemoryKiB > 64<<10 {
				p.MemoryKiB /= 2
				continue
			}
			p.Time = max(minArgonTime, int(target/el))
			break
		}
	default:
		return p, fmt.Errorf("%w: PBKDF type %q", ErrInvalidOptions, p.Type)
	}
	return p, p.validate()
}

// deriveKey runs the KDF. The caller zeroes the result.
func deriveKey(p PBKDF, passphrase, salt []byte, keyLen int) ([]byte, error) {
	switch p.Type {
	case "pbkdf2":
		h, err := hashByName(p.Hash)
		if err != nil {
			return nil, err
		}
		// crypto/pbkdf2 takes the password as a string; that copy cannot
		// be zeroed (documented in doc.go).
		k, err := pbkdf2.Key(h, string(passphrase), salt, p.Iterations, keyLen)
		if err != nil {
			return nil, fmt.Errorf("luks2: pbkdf2: %w", err)
		}
		return k, nil
	case "argon2id":
		return argon2.IDKey(passphrase, salt, uint32(p.Time), uint32(p.MemoryKiB), uint8(p.Threads), uint32(keyLen)), nil
	case "argon2i":
		return argon2.Key(passphrase, salt, uint32(p.Time), uint32(p.MemoryKiB), uint8(p.Threads), uint32(keyLen)), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrUnsupported, p.Type)
}
