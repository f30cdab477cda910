// agentscaler on Azure Functions (Linux, custom handler) starting its agents in Azure Container Instances.
//
// Deploy into the resource group that holds the function app; the agents' container groups live in a second,
// dedicated resource group (agentsResourceGroup), the only place the app's identity may create and delete them.
// See docs/deploy.md ("Azure Functions + ACI") for the steps and every value to supply.
//
// Plan: Elastic Premium EP1. It runs Linux custom handlers, integrates with a virtual network (the app can then reach
// private Azure DevOps Server or registry endpoints), and keeps one instance always ready, so a service hook is
// answered in milliseconds instead of after a cold start and the every-minute timer fires on time. Flex Consumption
// also integrates with a virtual network, but it supports a fixed list of language stacks whose custom-handler
// support is recent and not in every region, and it deploys from a blob container instead of the zip this project
// packages (make package).
targetScope = 'resourceGroup'

@description('Prefix of every resource name; lowercase letters and digits, 3 to 11 characters.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'agentscaler'

@description('Region of the function app and its resources.')
param location string = resourceGroup().location

@description('Azure DevOps organization URL: https://dev.azure.com/<org>.')
param azureDevOpsUrl string

@description('The Azure DevOps agent pool the agents join (it must exist).')
param azurePool string

@description('Our name for the pool: the agent name prefix ([a-z0-9-], at most 40 characters).')
@maxLength(40)
param poolName string = 'aci-linux'

@description('The agent image, such as contoso.azurecr.io/azp-agent:linux (built from infra/images/linux).')
param agentImage string

@description('CPU cores per agent (ACI accepts whole and fractional cores, written as a string: "1", "2", "0.5").')
param agentCpu string = '2'

@description('Memory per agent, as a Kubernetes-style quantity: 4Gi, 3584Mi.')
param agentMemory string = '4Gi'

@description('Never more agents than this in the pool.')
@minValue(1)
param maxAgents int = 10

@description('Warm agents kept ready.')
@minValue(0)
param minIdle int = 0

@description('What the agents offer, matched against job demands.')
param capabilities object = {
  'Agent.OS': 'Linux'
}

@description('Name of an existing resource group, dedicated to the agents\' container groups, in this subscription.')
param agentsResourceGroup string

@description('Region of the agents\' container groups.')
param agentsLocation string = location

@description('Subnets (resource ids) delegated to Microsoft.ContainerInstance/containerGroups for the agents; empty: no private network.')
param agentSubnetIds array = []

@description('Subnet (resource id) delegated to Microsoft.Web/serverFarms for the function app\'s VNet integration; empty: none.')
param functionSubnetId string = ''

@description('Private registry host of the agent image, such as contoso.azurecr.io; empty for a public image.')
param registryServer string = ''

@description('Resource id of a user-assigned identity with AcrPull on registryServer, attached to each agent for the pull. Never the app\'s own identity.')
param registryPullIdentityId string = ''

@description('Basic-auth user the service hook sends.')
param webhookUsername string = 'azdo'

@description('Azure DevOps PAT, scope Agent Pools (Read & manage). Leave it out of parameter files: az deployment prompts for it.')
@secure()
param azpToken string

@description('Password of the service hook\'s basic auth; at least 16 characters. Leave it out of parameter files: az deployment prompts for it.')
@secure()
@minLength(16)
param webhookPassword string

var suffix = uniqueString(resourceGroup().id, namePrefix)

// A YAML single-quoted scalar: free text (a pool name with spaces or a colon) stays one value.
func yamlQuote(s string) string => '\'${replace(s, '\'', '\'\'')}\''
var configPath = '/home/site/wwwroot/agentscaler.yaml'
// The agents' identity-free setting of the pull, when a private registry is named.
var registryYaml = empty(registryServer) ? '' : format('\n      registry: {{server: {0}, identity: {1}}}', registryServer, registryPullIdentityId)

// The configuration the function app reads (AGENTSCALER_CONFIG): environment variables alone cannot describe an aci
// pool. Secrets stay in app settings (Key Vault references); the file only names their variables. Written out by the
// deployment (output agentscalerYaml) and shipped inside the function app package.
var agentscalerYaml = format('''
azuredevops:
  url: {0}
  token_env: AZP_TOKEN
webhook:
  basic_auth: {{username: {1}, password_env: AGENTSCALER_WEBHOOK_PASSWORD}}
pools:
  - name: {2}
    azure_pool: {3}
    provider: aci
    max_agents: {4}
    min_idle: {5}
    capabilities: {6}
    agent:
      image: {7}
      cpu: {8}
      memory: {9}
    aci:
      subscription_id: {10}
      resource_group: {11}
      location: {12}
      os_type: Linux
      subnet_ids: {13}
      identity: {{client_id: {14}}}{15}
''', yamlQuote(azureDevOpsUrl), yamlQuote(webhookUsername), poolName, yamlQuote(azurePool), maxAgents, minIdle, string(capabilities), yamlQuote(agentImage), agentCpu, agentMemory, subscription().subscriptionId, agentsResourceGroup, agentsLocation, string(agentSubnetIds), identity.properties.clientId, registryYaml)

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-id'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: toLower('${namePrefix}${suffix}')
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-ai'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: '${namePrefix}-${take(suffix, 8)}'
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource tokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'azp-token'
  properties: {
    value: azpToken
  }
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'webhook-password'
  properties: {
    value: webhookPassword
  }
}

// Key Vault Secrets User, on the vault only: the app reads its two secrets through Key Vault references.
var keyVaultSecretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

resource vaultRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, identity.id, keyVaultSecretsUser)
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The narrowest role on the agents: a custom role with exactly the actions docs/providers/aci.md lists, assigned on
// the agents' resource group, on each agent subnet and on the pull identity.
module agentsRole 'modules/aci-role.bicep' = {
  name: '${namePrefix}-aci-role'
  scope: resourceGroup(agentsResourceGroup)
  params: {
    principalId: identity.properties.principalId
    roleName: 'agentscaler ACI agents (${subscription().subscriptionId}/${agentsResourceGroup})'
    extraScopes: union(
      map(agentSubnetIds, id => join(take(split(id, '/'), 5), '/')),
      empty(registryPullIdentityId) ? [] : [join(take(split(registryPullIdentityId, '/'), 5), '/')]
    )
  }
}

module subnetJoin 'modules/aci-role-scoped.bicep' = [
  for (id, i) in agentSubnetIds: {
    name: '${namePrefix}-subnet-join-${i}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      principalId: identity.properties.principalId
      roleDefinitionId: agentsRole.outputs.roleDefinitionId
      subnetId: id
    }
  }
]

module pullAssign 'modules/aci-role-scoped.bicep' = if (!empty(registryPullIdentityId)) {
  name: '${namePrefix}-pull-identity-assign'
  // Evaluated even when the module is skipped: never index an empty id.
  scope: empty(registryPullIdentityId) ? resourceGroup() : resourceGroup(split(registryPullIdentityId, '/')[2], split(registryPullIdentityId, '/')[4])
  params: {
    principalId: identity.properties.principalId
    roleDefinitionId: agentsRole.outputs.roleDefinitionId
    pullIdentityId: registryPullIdentityId
  }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${namePrefix}-plan'
  location: location
  kind: 'elastic'
  sku: {
    name: 'EP1'
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true // Linux
    maximumElasticWorkerCount: 3
  }
}

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: '${namePrefix}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  dependsOn: [
    vaultRead // Key Vault references resolve at start only once the identity may read the secrets
  ]
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    reserved: true
    keyVaultReferenceIdentity: identity.id
    virtualNetworkSubnetId: empty(functionSubnetId) ? null : functionSubnetId
    siteConfig: {
      linuxFxVersion: '' // a custom handler brings its own executable: no language stack
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      minimumElasticInstanceCount: 1
      vnetRouteAllEnabled: !empty(functionSubnetId)
      appSettings: [
        // The Functions host.
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
        { name: 'AzureWebJobsStorage', value: storageConnection }
        { name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING', value: storageConnection }
        { name: 'WEBSITE_CONTENTSHARE', value: toLower('${namePrefix}-${suffix}') }
        { name: 'WEBSITE_RUN_FROM_PACKAGE', value: '1' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        // agentscaler: the configuration file, and the secrets its token_env and password_env name.
        { name: 'AGENTSCALER_CONFIG', value: configPath }
        { name: 'AZP_TOKEN', value: '@Microsoft.KeyVault(SecretUri=${tokenSecret.properties.secretUri})' }
        { name: 'AGENTSCALER_WEBHOOK_PASSWORD', value: '@Microsoft.KeyVault(SecretUri=${webhookSecret.properties.secretUri})' }
      ]
    }
  }
}

@description('The service hook URL: pass it to create-service-hook.sh as AGENTSCALER_HOOK_URL.')
output webhookUrl string = 'https://${app.properties.defaultHostName}/api/webhook/azuredevops'

@description('The function app, for az functionapp deployment source config-zip.')
output functionAppName string = app.name

@description('agentscaler.yaml for the package: save it as dist/functionapp/agentscaler.yaml before zipping.')
output agentscalerYaml string = agentscalerYaml

@description('Client id of the app\'s identity (ARM calls to ACI).')
output identityClientId string = identity.properties.clientId
