package azuredevops

import (
	"net"
	"net/url"
	"strings"
)

// cloudHost is the host of Azure DevOps Services organization URLs.
const cloudHost = "dev.azure.com"

// Organization returns one identity for the URL forms that name an
// organization or collection, so that a service hook and the configuration
// compare equal whichever form each uses:
//
//	https://dev.azure.com/contoso[/...]      -> dev.azure.com/contoso
//	https://contoso.visualstudio.com[/...]   -> dev.azure.com/contoso
//	https://server:8443/tfs/DefaultCollection -> server:8443/tfs/defaultcollection
//
// Organization and collection names are case-insensitive, and the scheme,
// credentials, default ports and trailing slashes do not change the
// identity. It returns "" for what is not an absolute http(s) URL.
func Organization(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	segs := strings.FieldsFunc(strings.ToLower(u.Path), func(r rune) bool { return r == '/' })
	switch {
	case host == cloudHost:
		if len(segs) == 0 {
			return ""
		}
		return cloudHost + "/" + segs[0]
	case strings.HasSuffix(host, ".visualstudio.com"):
		// contoso.visualstudio.com, and its service hosts such as
		// contoso.vsrm.visualstudio.com: the first label is the organization.
		org, _, _ := strings.Cut(strings.TrimSuffix(host, ".visualstudio.com"), ".")
		return cloudHost + "/" + org
	}
	// Azure DevOps Server: the collection is the host and the whole path.
	if port := u.Port(); port != "" && !(u.Scheme == "https" && port == "443" || u.Scheme == "http" && port == "80") {
		host = net.JoinHostPort(host, port)
	}
	return strings.Join(append([]string{host}, segs...), "/")
}

// SameOrganization reports whether two URLs name one organization or
// collection (see Organization). Unrecognisable URLs match nothing.
func SameOrganization(a, b string) bool {
	ia := Organization(a)
	return ia != "" && ia == Organization(b)
}
