// The agents' custom role, defined and assigned on the agents' resource group (this module's scope): exactly the
// actions docs/providers/aci.md lists, and nothing else. extraScopes are the resource groups of the agent subnets
// and of the pull identity, where aci-role-scoped.bicep assigns the same role on those single resources.
targetScope = 'resourceGroup'

@description('Object id of the function app\'s identity.')
param principalId string

@description('Display name of the role; unique in the tenant.')
param roleName string

@description('Further resource groups (ids) the role may be assigned in.')
param extraScopes array = []

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, roleName)
  properties: {
    roleName: roleName
    description: 'Create, read and delete agentscaler\'s agent container groups; join their subnet; attach their pull identity.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.ContainerInstance/containerGroups/read'
          'Microsoft.ContainerInstance/containerGroups/write'
          'Microsoft.ContainerInstance/containerGroups/delete'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
          'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: union([resourceGroup().id], extraScopes)
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, role.id)
  properties: {
    roleDefinitionId: role.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output roleDefinitionId string = role.id
