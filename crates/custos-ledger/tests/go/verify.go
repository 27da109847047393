// An independent check of custos's logs: Go's golang.org/x/mod/sumdb/note and tlog
// verify what custos-ledger signed and proved. Run by tests/interop.rs with Debian's
// golang-go and golang-golang-x-mod-dev (GOPATH mode, no network).
//
// Reads the JSON case file named by the first argument and prints one line per check.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type consistency struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

type cases struct {
	VerifierKey string        `json:"verifier_key"`
	Origin      string        `json:"origin"`
	Leaves      []string      `json:"leaves"`
	Checkpoints []string      `json:"checkpoints"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

func hashes(b64 []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		h, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(h) != len(out[i]) {
			return nil, fmt.Errorf("proof hash %d is not 32 bytes of base64", i)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var c cases
	if err := json.Unmarshal(raw, &c); err != nil {
		panic(err)
	}
	verifier, err := note.NewVerifier(c.VerifierKey)
	if err != nil {
		fmt.Println("verifier-key FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("verifier-key ok", verifier.Name())

	// The log's stored hashes, computed by tlog from the records alone.
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = stored[x]
		}
		return out, nil
	})
	leaves := make([][]byte, len(c.Leaves))
	for i, s := range c.Leaves {
		if leaves[i], err = base64.StdEncoding.DecodeString(s); err != nil {
			panic(err)
		}
		more, err := tlog.StoredHashes(int64(i), leaves[i], reader)
		if err != nil {
			panic(err)
		}
		stored = append(stored, more...)
	}

	roots := map[int64]tlog.Hash{}
	for _, msg := range c.Checkpoints {
		n, err := note.Open([]byte(msg), note.VerifierList(verifier))
		if err != nil {
			fmt.Println("checkpoint FAIL:", err)
			continue
		}
		lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
		size, err := strconv.ParseInt(lines[1], 10, 64)
		if err != nil || lines[0] != c.Origin {
			fmt.Println("checkpoint FAIL: bad origin or size")
			continue
		}
		root, err := hashes(lines[2:3])
		if err != nil {
			fmt.Println("checkpoint FAIL:", err)
			continue
		}
		want, err := tlog.TreeHash(size, reader)
		if err != nil || want != root[0] {
			fmt.Println("checkpoint", size, "FAIL: root differs from tlog's")
			continue
		}
		roots[size] = root[0]
		fmt.Println("checkpoint", size, "ok")
	}
	for _, p := range c.Inclusion {
		proof, err := hashes(p.Proof)
		if err == nil {
			err = tlog.CheckRecord(tlog.RecordProof(proof), p.Size, roots[p.Size], p.Index, tlog.RecordHash(leaves[p.Index]))
		}
		if err != nil {
			fmt.Printf("inclusion %d/%d FAIL: %v\n", p.Index, p.Size, err)
		} else {
			fmt.Printf("inclusion %d/%d ok\n", p.Index, p.Size)
		}
	}
	for _, p := range c.Consistency {
		proof, err := hashes(p.Proof)
		if err == nil {
			err = tlog.CheckTree(tlog.TreeProof(proof), p.New, roots[p.New], p.Old, roots[p.Old])
		}
		if err != nil {
			fmt.Printf("consistency %d->%d FAIL: %v\n", p.Old, p.New, err)
		} else {
			fmt.Printf("consistency %d->%d ok\n", p.Old, p.New)
		}
	}
}
