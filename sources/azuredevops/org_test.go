package azuredevops

import "testing"

func TestOrganization(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"https://dev.azure.com/contoso", "dev.azure.com/contoso"},
		{"https://dev.azure.com/contoso/", "dev.azure.com/contoso"},
		{"https://dev.azure.com/Contoso/Project/_apis/x", "dev.azure.com/contoso"},
		{"HTTPS://DEV.AZURE.COM/contoso", "dev.azure.com/contoso"},
		{"https://contoso.visualstudio.com", "dev.azure.com/contoso"},
		{"https://contoso.visualstudio.com/", "dev.azure.com/contoso"},
		{"https://Contoso.VisualStudio.com/DefaultCollection/", "dev.azure.com/contoso"},
		{"https://contoso.vsrm.visualstudio.com/", "dev.azure.com/contoso"},
		{"https://user:pw@dev.azure.com:443/contoso", "dev.azure.com/contoso"},
		{"https://server/tfs/DefaultCollection", "server/tfs/defaultcollection"},
		{"https://server/tfs/DefaultCollection/", "server/tfs/defaultcollection"},
		{"https://server:443/tfs/defaultcollection", "server/tfs/defaultcollection"},
		{"http://server/tfs/DefaultCollection", "server/tfs/defaultcollection"},
		{"https://server:8443/tfs/Collection", "server:8443/tfs/collection"},
		{"https://server/Collection", "server/collection"},
		{"http://127.0.0.1:8080/contoso", "127.0.0.1:8080/contoso"},
		{"http://[::1]:8080/contoso", "[::1]:8080/contoso"},
		{"https://dev.azure.com", ""},
		{"https://dev.azure.com/", ""},
		{"", ""},
		{"dev.azure.com/contoso", ""},
		{"ftp://dev.azure.com/contoso", ""},
		{"https://%zz", ""},
	}
	for _, tt := range tests {
		if got := Organization(tt.url); got != tt.want {
			t.Errorf("Organization(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

func TestSameOrganization(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"https://contoso.visualstudio.com", "https://dev.azure.com/contoso/", true},
		{"https://dev.azure.com/contoso", "https://dev.azure.com/CONTOSO", true},
		{"https://server/tfs/DefaultCollection", "https://server/tfs/defaultcollection/", true},
		{"https://dev.azure.com/contoso", "https://dev.azure.com/fabrikam/", false},
		{"https://contoso.visualstudio.com", "https://fabrikam.visualstudio.com", false},
		{"https://server/tfs/Collection", "https://server/tfs/Other", false},
		{"https://server/tfs/Collection", "https://other/tfs/Collection", false},
		{"https://dev.azure.com/contoso", "https://contoso.example.com/", false},
		{"", "", false},
		{"not a url", "not a url", false},
	}
	for _, tt := range tests {
		if got := SameOrganization(tt.a, tt.b); got != tt.want {
			t.Errorf("SameOrganization(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
