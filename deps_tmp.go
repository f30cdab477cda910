package main
import (
 _ "gopkg.in/yaml.v3"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/prometheus/client_golang/prometheus/testutil"
 _ "github.com/Azure/azure-sdk-for-go/sdk/azidentity"
 _ "github.com/Azure/azure-sdk-for-go/sdk/azcore"
)
func main(){}
