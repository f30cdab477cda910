// Assigns the agents' custom role on one resource outside the agents' resource group: an agent subnet (for its
// join action) or the registry pull identity (for its assign action). Deployed to that resource's resource group.
targetScope = 'resourceGroup'

@description('Object id of the function app\'s identity.')
param principalId string

@description('The custom role from aci-role.bicep.')
param roleDefinitionId string

@description('Resource id of an agent subnet; or leave empty and set pullIdentityId.')
param subnetId string = ''

@description('Resource id of the registry pull identity; or leave empty and set subnetId.')
param pullIdentityId string = ''

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' existing = if (!empty(subnetId)) {
  name: empty(subnetId) ? 'none' : split(subnetId, '/')[8]
}

resource subnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' existing = if (!empty(subnetId)) {
  parent: vnet
  name: empty(subnetId) ? 'none' : split(subnetId, '/')[10]
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = if (!empty(pullIdentityId)) {
  name: empty(pullIdentityId) ? 'none' : last(split(pullIdentityId, '/'))
}

resource onSubnet 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(subnetId)) {
  scope: subnet
  name: guid(subnetId, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onPullIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(pullIdentityId)) {
  scope: pullIdentity
  name: guid(pullIdentityId, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
