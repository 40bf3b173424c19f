package admin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Export formats.
const (
	FormatPEM    = "PEM"
	FormatDER    = "DER"
	FormatPKCS12 = "PKCS#12"
)

// formatsByExtension says which formats a file name's extension promises
// (issue 9 item 5: the format follows the request unambiguously). Names
// with other extensions take any format.
var formatsByExtension = map[string][]string{
	".pfx": {FormatPKCS12},
	".p12": {FormatPKCS12},
	".pem": {FormatPEM},
	".crt": {FormatPEM},
	".der": {FormatDER},
	".cer": {FormatPEM, FormatDER}, // Windows writes .cer both ways
	".req": {FormatPEM, FormatDER},
	".csr": {FormatPEM, FormatDER},
}

// CheckOutputName refuses a file name whose extension promises another
// format than the one being written ("x.pfx" for a PEM certificate). "-"
// (standard output) takes any format.
func CheckOutputName(path, format string) error {
	if path == "-" {
		return nil
	}
	ext := strings.ToLower(filepath.Ext(path))
	want, ok := formatsByExtension[ext]
	if !ok {
		return nil
	}
	for _, f := range want {
		if f == format {
			return nil
		}
	}
	switch {
	case want[0] == FormatPKCS12:
		return fmt.Errorf("%s names a PKCS#12 file, but this export is %s: give a password file to export the certificate with its key as PKCS#12, or name the file .pem (or .der for DER)", path, format)
	case format == FormatPKCS12:
		return fmt.Errorf("%s names a %s file, but an export with a password is PKCS#12: name the file .pfx", path, strings.Join(want, " or "))
	default:
		return fmt.Errorf("%s names a %s file, but this export is %s: name the file %s", path, strings.Join(want, " or "), format, map[string]string{FormatPEM: ".pem", FormatDER: ".der"}[format])
	}
}

// ErrOutputExists is wrapped by CheckOutputPath's refusal to replace a
// file without force.
var ErrOutputExists = errors.New("the file exists")

// CheckOutputPath decides whether a face may write the file an operation
// delivers (Request.Deliver) to path: never a file inside the data
// directory (its database, keys, queue or mail: not even with force), and
// an existing file only with force (an error wrapping ErrOutputExists
// otherwise). "-" is standard output. The check follows symbolic links,
// so a link into the data directory is refused too.
func (a *Admin) CheckOutputPath(path string, force bool) error {
	if path == "-" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		real = r
	} else if r, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		real = filepath.Join(r, filepath.Base(abs))
	}
	data := a.dataDir
	if r, err := filepath.EvalSymlinks(data); err == nil {
		data = r
	}
	if real == data || strings.HasPrefix(real, data+string(filepath.Separator)) {
		return failed(Forbidden, "%s is inside the data directory %s, whose files only certrelay writes", path, a.dataDir).field("Path", path).fix("write the file somewhere else")
	}
	fi, err := os.Lstat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return invalid("Path", path, "%s is a directory: give a file name", path)
	case !force:
		return (&Error{Kind: Conflict, Field: "Path", Value: path, Err: fmt.Errorf("%w: %s exists already", ErrOutputExists, path)}).
			fix("remove it, choose another name, or let the command replace it")
	}
	return nil
}
