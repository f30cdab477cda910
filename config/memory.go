package config

import (
	"fmt"
	"math/big"
	"regexp"
)

var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|k|M|G)?$`)

var quantityUnits = map[string]int64{
	"": 1, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
}

// MemoryMB returns agent.memory in mebibytes (MiB), rounded up so the
// agent never gets less than asked; 0 when memory is not set. Memory is a
// Kubernetes-style quantity: 512Mi, 2Gi, 1.5G, or plain bytes.
func (a Agent) MemoryMB() (int64, error) {
	if a.Memory == "" {
		return 0, nil
	}
	// Longer than any sane quantity: not worth the big-number arithmetic.
	if len(a.Memory) > 32 {
		return 0, fmt.Errorf("memory: a quantity of %d characters is too large", len(a.Memory))
	}
	m := quantityRE.FindStringSubmatch(a.Memory)
	if m == nil {
		return 0, fmt.Errorf("memory %q: not a quantity such as 512Mi or 2Gi", a.Memory)
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("memory %q: not a number", a.Memory)
	}
	n.Mul(n, new(big.Rat).SetInt64(quantityUnits[m[2]]))
	n.Quo(n, new(big.Rat).SetInt64(1<<20))
	q, r := new(big.Int).QuoRem(n.Num(), n.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("memory %q: too large", a.Memory)
	}
	return q.Int64(), nil
}
