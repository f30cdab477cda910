package aci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/providers"
)

// responseError is the error the SDK returns for an ARM answer with this
// status, headers and error body, built by the SDK's own constructor.
func responseError(status int, code, message string, header http.Header) error {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	u, _ := url.Parse("https://management.azure.com/subscriptions/" + testSubscription + "/resourceGroups/rg-agents/providers/Microsoft.ContainerInstance/containerGroups/linux-r1?api-version=2023-05-01")
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range header {
		h[k] = v
	}
	return runtime.NewResponseError(&http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Request: &http.Request{Method: http.MethodPut, URL: u},
	})
}

// nonRetriable is how the SDK marks an error it will not retry (its
// errorinfo.NonRetriable), here standing in for a credential that failed.
type nonRetriable struct{ error }

func (nonRetriable) NonRetriable() {}

func TestClassification(t *testing.T) {
	const (
		quotaMsg    = "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota 'StandardCores' exceeded in region 'westeurope'. Limit: '10', Usage: '10' Requested: '2'."
		coresMsg    = "Operation could not be completed as it results in exceeding approved Total Regional Cores quota."
		capacityMsg = "The requested resource is not available in the location 'westeurope' at this moment. Please retry with a different resource request or in another location. Resource requested: '2' CPU '4' GB memory 'Linux' OS"
	)
	tests := []struct {
		name      string
		err       error
		retryable bool
		after     time.Duration
		reason    string
	}{
		{"throttled", responseError(429, "TooManyRequests", "The request is being throttled.", http.Header{"Retry-After": {"17"}}), true, 17 * time.Second, "throttled"},
		{"throttled in ms", responseError(429, "TooManyRequests", "", http.Header{"Retry-After-Ms": {"1500"}}), true, 1500 * time.Millisecond, "throttled"},
		{"throttled without hint", responseError(429, "TooManyRequests", "", nil), true, 0, "throttled"},
		{"container group quota", responseError(409, "ContainerGroupQuotaReached", quotaMsg, nil), false, 0, "quota:StandardCores"},
		{"regional cores quota", responseError(409, "OperationNotAllowed", coresMsg, nil), false, 0, "quota:OperationNotAllowed"},
		{"quota code only", responseError(409, "ContainerGroupQuotaReached", "", nil), false, 0, "quota:ContainerGroupQuotaReached"},
		{"capacity on the PUT", responseError(409, "ServiceUnavailable", capacityMsg, nil), true, CapacityRetryAfter, "capacity"},
		{"capacity 503 with hint", responseError(503, "ServiceUnavailable", capacityMsg, http.Header{"Retry-After": {"120"}}), true, 2 * time.Minute, "capacity"},
		{"capacity in the operation", responseError(200, "ServiceUnavailable", capacityMsg, nil), true, CapacityRetryAfter, "capacity"},
		{"still being deleted", responseError(409, "Conflict", "The container group 'linux-r1' is still transitioning, please retry later.", http.Header{"Retry-After": {"5"}}), true, 5 * time.Second, "conflict"},
		{"no role", responseError(403, "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.ContainerInstance/containerGroups/write'.", nil), false, 0, "auth"},
		{"no subnet join", responseError(403, "LinkedAuthorizationFailed", "The client has permission to perform action 'Microsoft.ContainerInstance/containerGroups/write', however it does not have permission to perform action 'Microsoft.Network/virtualNetworks/subnets/join/action'.", nil), false, 0, "auth"},
		{"bad token", responseError(401, "InvalidAuthenticationToken", "The access token is invalid.", nil), false, 0, "auth"},
		{"image", responseError(400, "InaccessibleImage", "The image 'contoso.azurecr.io/azp-agent:linux' in container group 'linux-r1' is not accessible.", nil), false, 0, "image"},
		{"registry", responseError(400, "RegistryErrorResponse", "An error response is received from the docker registry 'contoso.azurecr.io'.", nil), false, 0, "image"},
		{"image pull in the operation", responseError(200, "InaccessibleImage", "", nil), false, 0, "image"},
		{"other failed operation", responseError(200, "ContainerGroupDeploymentFailed", "", nil), false, 0, "provisioning_failed"},
		{"not registered", responseError(409, "MissingSubscriptionRegistration", "The subscription is not registered to use namespace 'Microsoft.ContainerInstance'.", nil), false, 0, "not_registered"},
		{"no resource group", responseError(404, "ResourceGroupNotFound", "Resource group 'rg-agents' could not be found.", nil), false, 0, "not_found"},
		{"bad request", responseError(400, "InvalidTagNameCharacters", "The tag names contain invalid characters.", nil), false, 0, "invalid_request"},
		{"server error", responseError(500, "InternalServerError", "", nil), true, 0, "server_error"},
		{"gateway timeout", responseError(504, "GatewayTimeout", "", http.Header{"Retry-After": {"3"}}), true, 3 * time.Second, "server_error"},
		{"deadline", fmt.Errorf("put: %w", context.DeadlineExceeded), true, 0, "timeout"},
		{"canceled", fmt.Errorf("put: %w", context.Canceled), false, 0, "canceled"},
		{"credential refused", &azidentity.AuthenticationFailedError{}, false, 0, "auth"},
		{"credential unavailable", nonRetriable{errors.New("ManagedIdentityCredential: no managed identity endpoint")}, false, 0, "auth"},
		{"network", &url.Error{Op: "Put", URL: "https://management.azure.com", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, true, 0, "network"},
		{"unknown", errors.New("something else"), true, 0, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := failure(opCreate, "linux-r1", tt.err, nil)
			retryable, after, reason := providers.Classify(err)
			if retryable != tt.retryable || after != tt.after || reason != tt.reason {
				t.Errorf("classified %v/%v/%q, want %v/%v/%q\nerror: %v", retryable, after, reason, tt.retryable, tt.after, tt.reason, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the classified error no longer wraps the original")
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	const token, password = "pat-secret-value-8d1f", "registry-password-51ac"
	// A service that echoes what it was sent must not carry it into our errors.
	src := responseError(400, "InvalidContainerProperties", "environment variable AZP_TOKEN value '"+token+"' and password '"+password+"' are invalid", nil)
	err := failure(opCreate, "linux-r1", src, []string{token, password})
	text := err.Error()
	if strings.Contains(text, token) || strings.Contains(text, password) {
		t.Errorf("error text reveals a secret: %s", text)
	}
	for _, want := range []string{"create linux-r1", "400 Bad Request", "InvalidContainerProperties", "[redacted]", "(permanent)"} {
		if !strings.Contains(text, want) {
			t.Errorf("error text %q does not say %q", text, want)
		}
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "InvalidContainerProperties" {
		t.Errorf("the SDK's error is not reachable with errors.As")
	}

	op := failure(opCreate, "linux-r1", responseError(200, "ServiceUnavailable", "not available in the location 'westeurope'", nil), nil)
	if !strings.Contains(op.Error(), "operation failed: ServiceUnavailable: not available") {
		t.Errorf("failed operation text = %q; want the code and message without a 200 status", op.Error())
	}
}
