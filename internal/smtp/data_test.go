package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// refDecode is the reference model of the data reader, byte by byte:
// the content, the first content error, and how many input bytes the
// data phase takes (-1 when the end marker never comes).
func refDecode(in []byte, max int64, maxLine int) (out []byte, err error, consumed int) {
	bol := true
	lineLen := 0
	setErr := func(e error) {
		if err == nil {
			err = e
		}
	}
	emit := func(b ...byte) {
		out = append(out, b...)
		if max > 0 && int64(len(out)) > max {
			setErr(ErrMessageTooLarge)
		}
		lineLen += len(b)
		if maxLine > 0 && lineLen > maxLine {
			setErr(ErrDataLineTooLong)
		}
	}
	for i := 0; i < len(in); {
		if bol && in[i] == '.' {
			if bytes.HasPrefix(in[i:], []byte(".\r\n")) {
				return out, err, i + 3
			}
			i++
			bol = false
			continue
		}
		switch c := in[i]; {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			emit('\r', '\n')
			lineLen = 0
			i += 2
			bol = true
			continue
		case c == '\r' && i+1 == len(in):
			emit(c) // undecided, the input ends here
		case c == '\r' || c == '\n':
			setErr(ErrBareNewline)
			emit(c)
			if c == '\n' {
				lineLen = 0
			}
		default:
			emit(c)
		}
		i++
		bol = false
	}
	return out, err, -1
}

// chunkReader returns its input in reads of random sizes.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + r.rng.IntN(min(len(p), len(r.data), 64))
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// runReader feeds in to a dataReader the way the server does (Data reads
// with io.ReadAll or io.Copy, then finish) and returns what it saw.
func runReader(in []byte, src io.Reader, bufSize int, max int64, maxLine int, useCopy bool) (out []byte, contentErr, ioErr error, rest []byte) {
	br := bufio.NewReaderSize(src, bufSize)
	var r dataReader
	r.reset(br, max, maxLine)
	var buf bytes.Buffer
	var err error
	if useCopy {
		_, err = io.Copy(&buf, &r)
	} else {
		var b []byte
		b, err = io.ReadAll(&r)
		buf.Write(b)
	}
	contentErr, ioErr = r.finish()
	if ioErr == nil && err != nil && contentErr == nil {
		contentErr = err
	}
	rest, _ = io.ReadAll(br)
	return buf.Bytes(), contentErr, ioErr, rest
}

func TestDataReaderCases(t *testing.T) {
	tail := "NEXT\r\n"
	cases := []struct {
		name    string
		in      string
		want    string
		wantErr error
		max     int64
		maxLine int
	}{
		{name: "ok/empty", in: ".\r\n", want: ""},
		{name: "ok/simple", in: "a\r\nb\r\n.\r\n", want: "a\r\nb\r\n"},
		{name: "ok/unstuff", in: "..\r\n.a\r\n...b\r\n.\r\n", want: ".\r\na\r\n..b\r\n"},
		{name: "ok/dot-not-at-bol", in: "a.\r\nb..\r\n.\r\n", want: "a.\r\nb..\r\n"},
		{name: "ok/no-final-crlf-is-impossible", in: "a\r\n.\r\n", want: "a\r\n"},
		{name: "ok/size-exact", in: "abc\r\n.\r\n", want: "abc\r\n", max: 5},
		{name: "fail/size-over", in: "abcd\r\n.\r\n", wantErr: ErrMessageTooLarge, max: 5},
		{name: "ok/size-stuffed-dot-not-counted", in: "..abc\r\n.\r\n", want: ".abc\r\n", max: 6},
		{name: "fail/bare-lf", in: "a\nb\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/bare-cr", in: "a\rb\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/cr-cr-lf", in: "a\r\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-lf-dot-lf", in: "a\n.\nMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-lf-dot-crlf", in: "a\n.\r\nMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-crlf-dot-lf", in: "a\r\n.\nMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-cr-dot-crlf", in: "a\r.\r\nMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-crlf-dot-cr", in: "a\r\n.\rMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "fail/smuggle-first-line", in: ".\nMAIL\r\n.\r\n", wantErr: ErrBareNewline},
		{name: "ok/line-at-limit", in: "123\r\n.\r\n", want: "123\r\n", maxLine: 5},
		{name: "fail/line-over-limit", in: "1234\r\n.\r\n", wantErr: ErrDataLineTooLong, maxLine: 5},
		{name: "ok/line-limit-stuffed-dot-not-counted", in: "..23\r\n.\r\n", want: ".23\r\n", maxLine: 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in + tail)
			for _, bufSize := range []int{16, 17, 64, 4096} {
				for _, useCopy := range []bool{false, true} {
					srcs := map[string]io.Reader{
						"whole":    bytes.NewReader(in),
						"one-byte": iotest.OneByteReader(bytes.NewReader(in)),
						"half":     iotest.HalfReader(bytes.NewReader(in)),
					}
					for srcName, src := range srcs {
						out, cerr, ioErr, rest := runReader(in, src, bufSize, tc.max, tc.maxLine, useCopy)
						if ioErr != nil {
							t.Fatalf("%s/%d: I/O error %v", srcName, bufSize, ioErr)
						}
						if !errors.Is(cerr, tc.wantErr) {
							t.Fatalf("%s/%d/copy=%v: error %v, want %v", srcName, bufSize, useCopy, cerr, tc.wantErr)
						}
						if tc.wantErr == nil && string(out) != tc.want {
							t.Fatalf("%s/%d/copy=%v: content %q, want %q", srcName, bufSize, useCopy, out, tc.want)
						}
						if string(rest) != tail {
							t.Fatalf("%s/%d/copy=%v: left %q after the data, want %q (desync)", srcName, bufSize, useCopy, rest, tail)
						}
					}
				}
			}
		})
	}
}

// TestDataReaderModel checks the reader against refDecode on random
// inputs made of the characters that matter, read in random chunks.
func TestDataReaderModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", ".", "\r", "\n", "\r\n", "\r\n.", "\r\n.\r\n", "\r\n..", "\n.\n"}
	for iter := 0; iter < 20000; iter++ {
		var sb strings.Builder
		for n := rng.IntN(40); n > 0; n-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		sb.WriteString("\r\n.\r\nTAIL")
		in := []byte(sb.String())
		max := int64(0)
		if rng.IntN(3) == 0 {
			max = int64(rng.IntN(30))
		}
		maxLine := 0
		if rng.IntN(3) == 0 {
			maxLine = 1 + rng.IntN(10)
		}
		wantOut, wantErr, consumed := refDecode(in, max, maxLine)
		bufSize := 16 + rng.IntN(48)
		useCopy := rng.IntN(2) == 0
		out, cerr, ioErr, rest := runReader(in, &chunkReader{in, rng}, bufSize, max, maxLine, useCopy)
		if ioErr != nil {
			t.Fatalf("input %q: I/O error %v", in, ioErr)
		}
		if string(rest) != string(in[consumed:]) {
			t.Fatalf("input %q: rest %q, want %q", in, rest, in[consumed:])
		}
		if (cerr == nil) != (wantErr == nil) {
			t.Fatalf("input %q (max %d, maxLine %d): error %v, want %v", in, max, maxLine, cerr, wantErr)
		}
		if cerr == nil && !bytes.Equal(out, wantOut) {
			t.Fatalf("input %q: content %q, want %q", in, out, wantOut)
		}
	}
}

func TestDataReaderIOErrors(t *testing.T) {
	t.Run("fail/eof-mid-message", func(t *testing.T) {
		_, _, ioErr, _ := runReader(nil, strings.NewReader("abc\r\n"), 16, 0, 0, false)
		if !errors.Is(ioErr, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", ioErr)
		}
	})
	t.Run("fail/eof-after-dot", func(t *testing.T) {
		_, _, ioErr, _ := runReader(nil, strings.NewReader("abc\r\n.\r"), 16, 0, 0, false)
		if !errors.Is(ioErr, io.ErrUnexpectedEOF) {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", ioErr)
		}
	})
	t.Run("ok/errors-are-sticky", func(t *testing.T) {
		var r dataReader
		r.reset(bufio.NewReader(strings.NewReader("a\nb\r\n.\r\n")), 0, 0)
		_, err1 := io.ReadAll(&r)
		_, err2 := r.Read(make([]byte, 10))
		if !errors.Is(err1, ErrBareNewline) || err1 != err2 {
			t.Fatalf("errors %v then %v, want ErrBareNewline twice", err1, err2)
		}
	})
}

func TestDataReaderZeroAlloc(t *testing.T) {
	msg := []byte(strings.Repeat("Some header: value of the header\r\n", 20) + "\r\n" +
		strings.Repeat("body line with some text in it, as mail has.\r\n", 60) + ".\r\n")
	src := bytes.NewReader(msg)
	br := bufio.NewReaderSize(src, readBufferSize)
	var r dataReader
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(msg)
		br.Reset(src)
		r.reset(br, 0, 0)
		if _, err := io.Copy(io.Discard, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}
