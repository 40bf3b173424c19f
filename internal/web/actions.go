package web

import (
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"

	"certrelay/internal/admin"
)

// Changes from the console: every form posts to /do/OPERATION with the
// operation's parameters as fields (named as the registry names them),
// the CSRF token, and where to go back to. The registry runs it; its
// questions (M1, M5, M8) come back as a dialog whose Yes and No post the
// same parameters again with the question's token — the web face of
// admin.ConfirmationRequired.

// Reserved form fields (parameters never start with "_").
const (
	fieldBack        = "_back"
	fieldAnswerToken = "_answer_token"
	fieldAnswer      = "_answer"
)

type confirmPage struct {
	Op       string
	Question string
	Details  []admin.Detail
	IfNo     string
	Token    string
	Hidden   []Prop // the parameters to post again
	Back     string
}

type resultPage struct {
	Op     string
	Done   string // what was done, for people
	Data   any
	Props  []Prop
	Cert   *admin.Certificate // when the result is a certificate: link to it
	Back   string
	Params []Prop
}

func (h *Handler) do(w http.ResponseWriter, r *http.Request, c *client) {
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Push-Url", "false") // a boosted POST: keep the page's address, not /do/…
	}
	name := strings.TrimPrefix(r.URL.Path, "/do/")
	op := admin.Lookup(name)
	if op == nil {
		h.errorPage(w, r, c, http.StatusNotFound, "There is no operation "+name+".")
		return
	}
	back := r.PostFormValue(fieldBack)
	if !safeNext(back) {
		back = "/certificates"
	}
	params, hidden, err := formParams(op, r)
	if err != nil {
		h.errorPage(w, r, c, http.StatusBadRequest, err.Error())
		return
	}
	req := admin.Request{Op: op.Name, Caller: c.caller(), Params: params}
	if tok := r.PostFormValue(fieldAnswerToken); tok != "" {
		req.Answer = &admin.Answer{Token: tok, Yes: r.PostFormValue(fieldAnswer) == "yes"}
	}
	res, err := h.a.Call(r.Context(), req)
	var cr *admin.ConfirmationRequired
	switch {
	case errors.As(err, &cr):
		d := h.data(r, c, "Confirm", "", confirmPage{Op: op.Name, Question: cr.Question, Details: cr.Details, IfNo: cr.IfNo, Token: cr.Token, Hidden: hidden, Back: back})
		h.pages.render(w, "confirm", d)
		return
	case err != nil:
		if admin.KindOf(err) == admin.Forbidden {
			h.log.Warn("console change refused", "account", c.account.Name, "role", c.role.String(), "from", c.from, "operation", op.Name)
		}
		h.callError(w, r, c, op.Name, err)
		return
	}
	if f := res.File; f != nil && op.Name == "Export-ExchangeCertificate" {
		ext, ctype := ".pem", "application/x-pem-file"
		switch f.Format {
		case "PKCS#12":
			ext, ctype = ".pfx", "application/x-pkcs12"
		case "DER":
			ext, ctype = ".cer", "application/pkix-cert"
		}
		t, _ := params["Thumbprint"].(string)
		sendFile(w, strings.ToUpper(t)+ext, ctype, f.Data)
		return
	}
	rp := resultPage{Op: op.Name, Done: admin.Render(op.Summary, op, webSyntax{}), Data: res.Data, Back: back}
	switch v := res.Data.(type) {
	case admin.Certificate:
		rp.Cert = &v
	case nil:
	default:
		rp.Props = props(v)
	}
	d := h.data(r, c, "Done", "", rp)
	for _, m := range res.Messages {
		d.Messages = append(d.Messages, pageMessage{string(m.Level), admin.Render(m.Text, op, webSyntax{})})
	}
	h.pages.render(w, "result", d)
}

// formParams reads an operation's parameters from a form: a field per
// parameter (repeated for lists; checkboxes of one text parameter, such
// as services, are joined with commas), files from multipart fields. An
// empty field is no parameter. It also returns the fields to post again
// when the operation asks (files and secrets are never among them: the
// operations that ask take neither).
func formParams(op *admin.Operation, r *http.Request) (admin.Params, []Prop, error) {
	p := admin.Params{}
	var hidden []Prop
	values := r.PostForm
	if r.MultipartForm != nil {
		values = r.MultipartForm.Value
	}
	for i := range op.Params {
		def := &op.Params[i]
		if def.Type.Kind == admin.KindData {
			if r.MultipartForm == nil {
				continue
			}
			f, _, err := r.FormFile(def.Name)
			if errors.Is(err, http.ErrMissingFile) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			data, err := io.ReadAll(io.LimitReader(f, maxBody))
			f.Close()
			if err != nil {
				return nil, nil, err
			}
			if len(data) > 0 {
				p[def.Name] = data
			}
			continue
		}
		var vals []string
		for _, v := range values[def.Name] {
			parts := []string{v}
			if def.Type.Kind == admin.KindList { // a textarea: one per line
				parts = strings.Split(v, "\n")
			}
			for _, x := range parts {
				if def.Type.Kind != admin.KindSecret {
					x = strings.TrimSpace(x)
				}
				if x != "" {
					vals = append(vals, x)
				}
			}
		}
		if len(vals) == 0 {
			continue
		}
		switch def.Type.Kind {
		case admin.KindList:
			p[def.Name] = vals
		case admin.KindBool:
			p[def.Name] = vals[len(vals)-1] == "true" || vals[len(vals)-1] == "on"
		case admin.KindText:
			p[def.Name] = strings.Join(vals, ",")
		default:
			p[def.Name] = vals[len(vals)-1]
		}
		if def.Type.Kind != admin.KindSecret {
			for _, v := range vals {
				hidden = append(hidden, Prop{def.Name, v})
			}
		}
	}
	sort.SliceStable(hidden, func(i, j int) bool { return hidden[i].Name < hidden[j].Name })
	return p, hidden, nil
}
