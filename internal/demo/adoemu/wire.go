package adoemu

// The wire shapes below are the emulator's own, written from the Azure DevOps
// REST reference (TaskAgentPool, TaskAgent, TaskAgentReference,
// TaskAgentJobRequest, ResourceUsage, the WrappedException error body) and the
// service hook sample of ms.vss-pipelines.job-state-changed-event. They are
// deliberately independent of the client's structs, so a wrong JSON tag on
// the client side fails a test against the emulator instead of agreeing with
// itself.

import "time"

// wireTime formats a time as the service does: RFC 3339 in UTC with up to
// seven fractional digits and a Z ("2022-11-21T16:42:52.7761408Z").
func wireTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.9999999Z")
}

type wireList[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

type wireLink struct {
	Href string `json:"href"`
}

type wireLinks map[string]wireLink

type wireIdentity struct {
	DisplayName string `json:"displayName"`
	ID          string `json:"id"`
	UniqueName  string `json:"uniqueName"`
	Descriptor  string `json:"descriptor"`
}

type wirePool struct {
	CreatedOn     string       `json:"createdOn"`
	AutoProvision bool         `json:"autoProvision"`
	AutoUpdate    bool         `json:"autoUpdate"`
	AutoSize      bool         `json:"autoSize"`
	TargetSize    *int         `json:"targetSize"`
	AgentCloudID  *int         `json:"agentCloudId"`
	CreatedBy     wireIdentity `json:"createdBy"`
	Owner         wireIdentity `json:"owner"`
	ID            int          `json:"id"`
	Scope         string       `json:"scope"`
	Name          string       `json:"name"`
	IsHosted      bool         `json:"isHosted"`
	PoolType      string       `json:"poolType"`
	Size          int          `json:"size"`
	IsLegacy      bool         `json:"isLegacy"`
	Options       string       `json:"options"`
}

// wireAgentRef is a TaskAgentReference (reservedAgent, matchedAgents).
type wireAgentRef struct {
	Links             wireLinks `json:"_links"`
	ID                int       `json:"id"`
	Name              string    `json:"name"`
	Version           string    `json:"version"`
	OSDescription     string    `json:"osDescription"`
	Enabled           bool      `json:"enabled"`
	Status            string    `json:"status"`
	ProvisioningState string    `json:"provisioningState"`
	AccessPoint       string    `json:"accessPoint"`
}

// wireOwner is a TaskOrchestrationOwner (definition, owner).
type wireOwner struct {
	Links wireLinks `json:"_links"`
	ID    int       `json:"id"`
	Name  string    `json:"name"`
}

// wireJobRequest is a TaskAgentJobRequest. Unset dates and the result are
// left out, as the service leaves them out (EmitDefaultValue = false). A
// request for a self-hosted pool carries no agentSpecification: only hosted
// pools fill it (with a vmImage).
type wireJobRequest struct {
	RequestID              int64             `json:"requestId"`
	QueueTime              string            `json:"queueTime"`
	AssignTime             string            `json:"assignTime,omitempty"`
	ReceiveTime            string            `json:"receiveTime,omitempty"`
	FinishTime             string            `json:"finishTime,omitempty"`
	Result                 string            `json:"result,omitempty"`
	ServiceOwner           string            `json:"serviceOwner"`
	HostID                 string            `json:"hostId"`
	ScopeID                string            `json:"scopeId"`
	PlanType               string            `json:"planType"`
	PlanID                 string            `json:"planId"`
	JobID                  string            `json:"jobId"`
	Demands                []string          `json:"demands"`
	MatchedAgents          []wireAgentRef    `json:"matchedAgents,omitempty"`
	ReservedAgent          *wireAgentRef     `json:"reservedAgent,omitempty"`
	Definition             wireOwner         `json:"definition"`
	Owner                  wireOwner         `json:"owner"`
	Data                   map[string]string `json:"data"`
	PoolID                 int               `json:"poolId"`
	OrchestrationID        string            `json:"orchestrationId"`
	MatchesAllAgentsInPool bool              `json:"matchesAllAgentsInPool"`
	Priority               int               `json:"priority"`
}

type wirePublicKey struct {
	Exponent string `json:"exponent"`
	Modulus  string `json:"modulus"`
}

type wireAuthorization struct {
	AuthorizationURL string         `json:"authorizationUrl,omitempty"`
	ClientID         string         `json:"clientId,omitempty"`
	PublicKey        *wirePublicKey `json:"publicKey,omitempty"`
}

// wireAgent is a TaskAgent. Capabilities use omitzero so that an agent
// listed with includeCapabilities=true and none of them shows {} rather than
// nothing.
type wireAgent struct {
	Links              wireLinks          `json:"_links"`
	MaxParallelism     int                `json:"maxParallelism"`
	CreatedOn          string             `json:"createdOn"`
	StatusChangedOn    string             `json:"statusChangedOn,omitempty"`
	AssignedRequest    *wireJobRequest    `json:"assignedRequest,omitempty"`
	Authorization      *wireAuthorization `json:"authorization,omitempty"`
	SystemCapabilities map[string]string  `json:"systemCapabilities,omitzero"`
	UserCapabilities   map[string]string  `json:"userCapabilities,omitzero"`
	ID                 int                `json:"id"`
	Name               string             `json:"name"`
	Version            string             `json:"version"`
	OSDescription      string             `json:"osDescription"`
	Enabled            bool               `json:"enabled"`
	Status             string             `json:"status"`
	ProvisioningState  string             `json:"provisioningState"`
	AccessPoint        string             `json:"accessPoint"`
}

// wireAgentAdd is the body of POST pools/{id}/agents as the agent's
// configure step sends it. Enabled is a pointer because an absent value
// means enabled.
type wireAgentAdd struct {
	Name               string             `json:"name"`
	Version            string             `json:"version"`
	OSDescription      string             `json:"osDescription"`
	Enabled            *bool              `json:"enabled"`
	MaxParallelism     int                `json:"maxParallelism"`
	Authorization      *wireAuthorization `json:"authorization"`
	SystemCapabilities map[string]string  `json:"systemCapabilities"`
	UserCapabilities   map[string]string  `json:"userCapabilities"`
}

type wireResourceLimit struct {
	ResourceLimitsData        map[string]string `json:"resourceLimitsData"`
	HostID                    string            `json:"hostId"`
	ParallelismTag            string            `json:"parallelismTag"`
	IsHosted                  bool              `json:"isHosted"`
	TotalCount                int               `json:"totalCount"`
	TotalMinutes              int               `json:"totalMinutes"`
	IsPremium                 bool              `json:"isPremium"`
	FailedToReachAllProviders bool              `json:"failedToReachAllProviders"`
}

// wireResourceUsage is a ResourceUsage. usedCount and usedMinutes are left
// out when zero, as the service does (EmitDefaultValue = false).
type wireResourceUsage struct {
	ResourceLimit   wireResourceLimit `json:"resourceLimit"`
	UsedCount       int               `json:"usedCount,omitempty"`
	UsedMinutes     int               `json:"usedMinutes,omitempty"`
	RunningRequests []wireJobRequest  `json:"runningRequests,omitempty"`
}

// wireError is the WrappedException body the service answers errors with.
type wireError struct {
	ID             string     `json:"$id"`
	InnerException *wireError `json:"innerException"`
	Message        string     `json:"message"`
	TypeName       string     `json:"typeName"`
	TypeKey        string     `json:"typeKey"`
	ErrorCode      int        `json:"errorCode"`
	EventID        int        `json:"eventId"`
}

// Service hook payload of ms.vss-pipelines.job-state-changed-event.

type wireMessage struct {
	Text     string `json:"text"`
	HTML     string `json:"html"`
	Markdown string `json:"markdown"`
}

type wireHookJob struct {
	Links      wireLinks `json:"_links"`
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	State      string    `json:"state"`
	Result     *string   `json:"result"`
	StartTime  *string   `json:"startTime"`
	FinishTime *string   `json:"finishTime"`
}

type wireHookStage struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	DisplayName *string `json:"displayName"`
	State       string  `json:"state"`
	Result      *string `json:"result"`
	StartTime   *string `json:"startTime"`
	FinishTime  *string `json:"finishTime"`
}

type wireHookPipeline struct {
	URL      string `json:"url"`
	ID       int    `json:"id"`
	Revision int    `json:"revision"`
	Name     string `json:"name"`
	Folder   string `json:"folder"`
}

type wireHookRun struct {
	Pipeline     wireHookPipeline `json:"pipeline"`
	State        string           `json:"state"`
	Result       *string          `json:"result"`
	CreatedDate  string           `json:"createdDate"`
	FinishedDate *string          `json:"finishedDate"`
	ID           int              `json:"id"`
	Name         string           `json:"name"`
}

type wireHookResource struct {
	Job          wireHookJob      `json:"job"`
	Stage        wireHookStage    `json:"stage"`
	Run          wireHookRun      `json:"run"`
	Pipeline     wireHookPipeline `json:"pipeline"`
	Repositories []any            `json:"repositories"`
}

type wireContainer struct {
	ID      string `json:"id"`
	BaseURL string `json:"baseUrl,omitempty"`
}

type wireContainers struct {
	Collection wireContainer `json:"collection"`
	Account    wireContainer `json:"account"`
	Project    wireContainer `json:"project"`
}

type wireEvent struct {
	SubscriptionID     string           `json:"subscriptionId"`
	NotificationID     int              `json:"notificationId"`
	ID                 string           `json:"id"`
	EventType          string           `json:"eventType"`
	PublisherID        string           `json:"publisherId"`
	Message            wireMessage      `json:"message"`
	DetailedMessage    wireMessage      `json:"detailedMessage"`
	Resource           wireHookResource `json:"resource"`
	ResourceVersion    string           `json:"resourceVersion"`
	ResourceContainers wireContainers   `json:"resourceContainers"`
	CreatedDate        string           `json:"createdDate"`
}

// The agent protocol, from the TaskAgentSession, TaskAgentMessage and
// AgentJobRequestMessage contracts of the agent's generated TaskAgent
// client, simplified as the package doc says.

// wireSession is a TaskAgentSession, the body and the answer of POST
// pools/{id}/sessions. The agent sends sessionId empty (or the zero GUID);
// the service answers with a new one. No encryptionKey: the emulator's
// message bodies are plain text.
type wireSession struct {
	SessionID          string            `json:"sessionId"`
	OwnerName          string            `json:"ownerName"`
	Agent              wireAgentRef      `json:"agent"`
	SystemCapabilities map[string]string `json:"systemCapabilities,omitempty"`
	UseFipsEncryption  bool              `json:"useFipsEncryption"`
}

// wireAgentMessage is a TaskAgentMessage. iv is the body's encryption IV,
// null because the body is not encrypted.
type wireAgentMessage struct {
	MessageID   int64   `json:"messageId"`
	MessageType string  `json:"messageType"`
	IV          *string `json:"iv"`
	Body        string  `json:"body"`
}

// wireJobMessage is the body of a PipelineAgentJobRequest message: an
// AgentJobRequestMessage cut down to the job's identity, plus its demands
// (not in the service's message) and its run time as a variable.
type wireJobMessage struct {
	MessageType    string                  `json:"messageType"`
	Plan           wirePlanReference       `json:"plan"`
	Timeline       wireTimelineReference   `json:"timeline"`
	JobID          string                  `json:"jobId"`
	JobDisplayName string                  `json:"jobDisplayName"`
	JobName        string                  `json:"jobName"`
	RequestID      int64                   `json:"requestId"`
	Demands        []string                `json:"demands"`
	Variables      map[string]wireVariable `json:"variables"`
}

// wirePlanReference is a TaskOrchestrationPlanReference.
type wirePlanReference struct {
	ScopeIdentifier string    `json:"scopeIdentifier"`
	PlanType        string    `json:"planType"`
	Version         int       `json:"version"`
	PlanID          string    `json:"planId"`
	Definition      wireOwner `json:"definition"`
	Owner           wireOwner `json:"owner"`
}

// wireTimelineReference is a TimelineReference.
type wireTimelineReference struct {
	ID       string  `json:"id"`
	ChangeID int     `json:"changeId"`
	Location *string `json:"location"`
}

// wireVariable is a VariableValue.
type wireVariable struct {
	Value    string `json:"value"`
	IsSecret bool   `json:"isSecret"`
}

// wireJobRequestUpdate is the body of PATCH pools/{id}/jobrequests/{id}: the
// agent sends the request id and either nothing else (it has the job: a
// lock renewal, whose first one starts the job), a receiveTime (started),
// or finishTime and result (finished). Times the agent sends are not
// trusted: the emulator records its own clock.
type wireJobRequestUpdate struct {
	RequestID   int64   `json:"requestId"`
	ReceiveTime *string `json:"receiveTime"`
	FinishTime  *string `json:"finishTime"`
	Result      *string `json:"result"`
}
