package config

import (
	"fmt"
	"strings"
)

// ACI holds the Azure Container Instances provider's settings.
type ACI struct {
	SubscriptionID string   `yaml:"subscription_id"`
	ResourceGroup  string   `yaml:"resource_group"`
	Location       string   `yaml:"location"`
	SubnetIDs      []string `yaml:"subnet_ids"`
	OSType         string   `yaml:"os_type"` // Linux | Windows
}

func (a *ACI) defaults() {
	if a.OSType == "" {
		a.OSType = DefaultACIOSType
	}
}

func (v *validator) aci(k string, a *ACI) {
	switch {
	case a.SubscriptionID == "":
		v.add(k+"subscription_id", "required when provider is aci: the subscription that holds the container groups")
	case !guidRE.MatchString(a.SubscriptionID):
		v.add(k+"subscription_id", "must be a subscription id (a GUID)")
	}
	if a.ResourceGroup == "" {
		v.add(k+"resource_group", "required when provider is aci: the resource group for the container groups")
	}
	if a.Location == "" {
		v.add(k+"location", "required when provider is aci: an Azure region, such as westeurope")
	}
	v.oneOf(k+"os_type", a.OSType, osTypes)
	for i, id := range a.SubnetIDs {
		if !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") || !strings.Contains(strings.ToLower(id), "/subnets/") {
			v.add(fmt.Sprintf("%ssubnet_ids[%d]", k, i), "must be a subnet resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>")
		}
	}
}
