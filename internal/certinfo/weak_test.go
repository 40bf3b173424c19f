//go:debug rsa1024min=0

package certinfo

import (
	"crypto/rsa"
	"math/big"
	"testing"
)

// weakRSA builds a 512-bit RSA key from fixed primes, since crypto/rsa
// refuses to generate keys below 1024 bits. It exists only to check that
// such keys are refused.
func weakRSA(t testing.TB) *rsa.PrivateKey {
	p, _ := new(big.Int).SetString("115792089237316195423570985008687907853269984665640564039457584007913129640233", 10) // 2^256 - 2^32 - 977, prime
	q, _ := new(big.Int).SetString("115792089210356248762697446949407573529996955224135760342422259061068512044369", 10) // order of P-256, prime
	n := new(big.Int).Mul(p, q)
	e := 65537
	phi := new(big.Int).Mul(new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Sub(q, big.NewInt(1)))
	d := new(big.Int).ModInverse(big.NewInt(int64(e)), phi)
	if d == nil {
		t.Fatal("no inverse")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: d, Primes: []*big.Int{p, q}}
	k.Precompute()
	return k
}
