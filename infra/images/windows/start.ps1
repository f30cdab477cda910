# start.ps1: the command of the Windows agent image, and the counterpart of
# infra/images/linux/start.sh, with the same environment, behaviour and exit
# statuses (see that script and docs/images.md). It registers the agent baked
# into the image, runs it for one job (--once), and unregisters it on the way
# out, also when the container is stopped (Ctrl+C or a shutdown event stop the
# running step; the finally block still runs).
#
# Secrets never reach a command line: config.cmd reads them from
# VSTS_AGENT_INPUT_TOKEN / VSTS_AGENT_INPUT_CLIENTSECRET, set only while it
# runs, and the token variables are removed before the agent starts.
# Arguments are passed to run.cmd after --once.

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$UnregisterAttempts = 5
$UpdateRestarts = 3
$UpdateWaitSeconds = 60

function Write-Log([string] $Message) { Write-Host "start.ps1: $Message" }

function Stop-WithError([string] $Message) {
    [Console]::Error.WriteLine("start.ps1: error: $Message")
    exit 1
}

# Read-Secret NAME: the secret NAME, read from the file named by NAME_FILE when
# that is set, else from NAME; surrounding blanks trimmed.
function Read-Secret([string] $Name) {
    $fileVar = "${Name}_FILE"
    $file = [Environment]::GetEnvironmentVariable($fileVar)
    if ($file) {
        if (-not (Test-Path -LiteralPath $file -PathType Leaf)) {
            Stop-WithError "$fileVar=${file}: no readable file there; mount the secret at that path or unset $fileVar"
        }
        $value = ([IO.File]::ReadAllText($file)).Trim()
        if (-not $value) { Stop-WithError "$fileVar=${file}: the file is empty; write the secret into it" }
        return $value
    }
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ($value) { return $value.Trim() }
    return ''
}

if (-not $env:AZP_URL) { Stop-WithError 'AZP_URL is not set: set it to the organization URL, e.g. https://dev.azure.com/contoso' }
if ($env:AZP_URL -notmatch '^https?://') { Stop-WithError "AZP_URL=$($env:AZP_URL): must start with https:// (or http:// for Azure DevOps Server)" }

if ($env:AZP_CLIENTID) {
    if ($env:AZP_TOKEN -or $env:AZP_TOKEN_FILE) { Stop-WithError 'AZP_CLIENTID and AZP_TOKEN (or AZP_TOKEN_FILE) are both set: set a token or a service principal, not both' }
    if (-not $env:AZP_TENANTID) { Stop-WithError 'AZP_TENANTID is not set: a service principal (AZP_CLIENTID) needs its tenant id' }
    $secret = Read-Secret 'AZP_CLIENTSECRET'
    if (-not $secret) { Stop-WithError 'AZP_CLIENTSECRET is not set: a service principal (AZP_CLIENTID) needs its secret, in AZP_CLIENTSECRET or a file named by AZP_CLIENTSECRET_FILE' }
    $auth = @('--auth', 'SP', '--clientid', $env:AZP_CLIENTID, '--tenantid', $env:AZP_TENANTID)
    $secretVar = 'VSTS_AGENT_INPUT_CLIENTSECRET'
} else {
    $secret = Read-Secret 'AZP_TOKEN'
    if (-not $secret) { Stop-WithError 'AZP_TOKEN is not set: set AZP_TOKEN, or AZP_TOKEN_FILE to a file holding it, or AZP_CLIENTID, AZP_TENANTID and AZP_CLIENTSECRET for a service principal' }
    $auth = @('--auth', 'PAT')
    $secretVar = 'VSTS_AGENT_INPUT_TOKEN'
}
foreach ($name in 'AZP_TOKEN', 'AZP_TOKEN_FILE', 'AZP_CLIENTSECRET', 'AZP_CLIENTSECRET_FILE', 'VSTS_AGENT_INPUT_TOKEN', 'VSTS_AGENT_INPUT_CLIENTSECRET') {
    [Environment]::SetEnvironmentVariable($name, $null)
}
$ignore = 'AZP_TOKEN,AZP_TOKEN_FILE,AZP_CLIENTSECRET,AZP_CLIENTSECRET_FILE,VSTS_AGENT_INPUT_TOKEN,VSTS_AGENT_INPUT_CLIENTSECRET'
$env:VSO_AGENT_IGNORE = if ($env:VSO_AGENT_IGNORE) { "$($env:VSO_AGENT_IGNORE),$ignore" } else { $ignore }

$agentHome = if ($env:AZP_AGENT_HOME) { $env:AZP_AGENT_HOME } else { 'C:\azp\agent' }
if (-not ((Test-Path -LiteralPath "$agentHome\config.cmd") -and (Test-Path -LiteralPath "$agentHome\run.cmd"))) {
    Stop-WithError "AZP_AGENT_HOME=${agentHome}: no agent there (config.cmd and run.cmd); build the image with the agent in it, or point AZP_AGENT_HOME at it"
}
$retryDelay = 5
if ($env:AZP_RETRY_DELAY) {
    if ($env:AZP_RETRY_DELAY -notmatch '^[0-9]+$') { Stop-WithError "AZP_RETRY_DELAY=$($env:AZP_RETRY_DELAY): must be a whole number of seconds" }
    $retryDelay = [int] $env:AZP_RETRY_DELAY
}
$name = if ($env:AZP_AGENT_NAME) { $env:AZP_AGENT_NAME } else { $env:COMPUTERNAME }
$pool = if ($env:AZP_POOL) { $env:AZP_POOL } else { 'Default' }
$work = if ($env:AZP_WORK) { $env:AZP_WORK } else { '_work' }
if ([IO.Path]::IsPathRooted($work)) {
    try { New-Item -ItemType Directory -Force -Path $work | Out-Null }
    catch { Stop-WithError "AZP_WORK=${work}: cannot create the work folder; mount a writable volume there or choose another path" }
}
Set-Location -LiteralPath $agentHome

# Invoke-AgentConfig ARGS: config.cmd with the secret in its environment only.
function Invoke-AgentConfig([string[]] $ConfigArgs) {
    [Environment]::SetEnvironmentVariable($secretVar, $secret)
    try {
        # To the host, not the pipeline: the function's output is the status.
        & "$agentHome\config.cmd" @ConfigArgs @auth | Out-Host
        return $LASTEXITCODE
    } finally {
        [Environment]::SetEnvironmentVariable($secretVar, $null)
    }
}

# Unregister: config.cmd remove, a bounded number of times: removal fails while
# the server still sees a job on the agent. What is left behind is an offline
# agent named after the instance, which agentscaler removes.
function Unregister {
    for ($i = 1; $i -le $UnregisterAttempts; $i++) {
        Write-Log "unregistering $name (attempt $i of $UnregisterAttempts)"
        if ((Invoke-AgentConfig @('remove', '--unattended')) -eq 0) {
            Write-Log "unregistered $name"
            return
        }
        if ($i -lt $UnregisterAttempts) { Start-Sleep -Seconds $retryDelay }
    }
    [Console]::Error.WriteLine("start.ps1: warning: could not unregister $name after $UnregisterAttempts attempts; agentscaler removes offline agents of its pools")
}

Write-Log "registering $name in pool $pool at $($env:AZP_URL)"
$rc = Invoke-AgentConfig @('--unattended', '--agent', $name, '--url', $env:AZP_URL, '--pool', $pool, '--work', $work, '--replace', '--acceptTeeEula')
if ($rc -ne 0) {
    [Console]::Error.WriteLine("start.ps1: error: config.cmd failed with exit status $rc; its output above says why")
    exit $rc
}

# Exit status 3 or 4: the agent received an update and exited for it to be
# replaced, before taking a job. The job this container was started for is
# still waiting, so start the updated agent again, a bounded number of times.
$done = $false
try {
    $restarts = 0
    while ($true) {
        Write-Log 'running the agent for one job'
        & "$agentHome\run.cmd" --once @args
        $rc = $LASTEXITCODE
        if ($rc -ne 3 -and $rc -ne 4) { break }
        if ($restarts -eq $UpdateRestarts) {
            [Console]::Error.WriteLine("start.ps1: error: the agent exited for an update $($restarts + 1) times in a row; giving up")
            break
        }
        $restarts++
        Write-Log "the agent updated itself (exit status $rc); starting the new version"
        Start-Sleep -Seconds $retryDelay
        for ($i = 0; $i -lt $UpdateWaitSeconds -and -not (Test-Path -LiteralPath "$agentHome\bin\Agent.Listener.exe"); $i++) {
            Start-Sleep -Seconds 1
        }
    }
    $done = $true
} finally {
    Unregister
    # Stopped before the agent finished: report it as the Linux image does
    # after SIGINT.
    if (-not $done) { exit 130 }
}
exit $rc
