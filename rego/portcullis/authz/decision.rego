# METADATA
# title: Tool-call authorization
# description: |
#   Decides one MCP tools/call for an agent: allow, deny with stable reason codes, or require_approval
#   with who may approve; plus obligations (redactions, a rate-limit class, DLP modes) for the
#   enforcement point, and whether the tool belongs in the agent's listings at all (visible).
#
#   Agent entitlements are separate from any human's access: only data.directory.entitlements
#   grants an agent anything. An agent acting for a user (input.user) gets at most the
#   intersection of its own entitlement and what that user delegated to it
#   (data.directory.delegations). Anything not allowed is denied.
#
#   Wasm has no time or crypto built-ins: the time comes in input.time, the engine adds the decision
#   id and bundle revision. Every directory lookup is by key (the Wasm evaluator has no rule
#   indexing; a directory holds thousands of agents). Documents: docs/policy-authoring.md.
package portcullis.authz

# METADATA
# description: The decision the enforcement point applies; the bundle's only entrypoint.
# scope: document
# entrypoint: true
decision := {
	"outcome": outcome,
	"allow": allow,
	"reasons": reasons,
	"approvers": approvers,
	"action_class": action_class,
	"visible": visible,
	"obligations": {
		"rate_limit_class": rate_limit_class,
		"redact": sort(redactions),
		"dlp": dlp,
	},
}

# METADATA
# description: Allow when nothing denies and nothing needs an approval.
default outcome := "allow"

# METADATA
# description: Deny wins over approval; approval wins over allow.
outcome := "deny" if {
	count(deny_reasons) > 0
} else := "require_approval" if {
	count(approval_reasons) > 0
}

# METADATA
# description: The boolean form of the outcome, for enforcement points that only read allow.
default allow := false

# METADATA
# description: Allowed exactly when the outcome is allow.
allow if outcome == "allow"

# METADATA
# description: An allow has the single reason `allowed`.
default reasons := ["allowed"]

# METADATA
# description: The reason codes of the outcome, sorted.
reasons := sort(deny_reasons) if {
	count(deny_reasons) > 0
} else := sort(approval_reasons) if {
	count(approval_reasons) > 0
}

# METADATA
# description: Nobody approves unless the outcome is require_approval.
default approvers := []

# METADATA
# description: Who may approve the call.
approvers := sort(eligible_approvers) if outcome == "require_approval"

# METADATA
# description: The calling agent's directory record.
agent := data.directory.agents[input.agent.id]

# METADATA
# description: The app's directory record.
app := data.directory.apps[input.app.id]

# METADATA
# description: Admin settings for this tool of the app (action-class override, redactions, disabled).
tool_config := app.tools[input.tool.name]

# METADATA
# description: |
#   The action class the call is judged as: an admin override of the tool in the directory wins
#   over the class the enforcement point derived from the tool's annotations.
default action_class := "unknown"

# METADATA
# description: The override wins; else the class the enforcement point derived.
action_class := class if {
	class := tool_config.action_class
} else := class if {
	class := input.action_class
}

# METADATA
# description: The action classes the model knows; anything else is denied.
action_classes := {"read", "write", "delete"}

# METADATA
# description: The agent's directory record says it is active.
agent_active if agent.state == "active"

# METADATA
# description: True when the caller and target are valid, so entitlement reasons are meaningful.
well_formed if {
	agent_active
	app
	action_class in action_classes
}

# METADATA
# description: The call is a delete and the app forbids deletes through agents.
deletes_denied if {
	action_class == "delete"
	app.delete == "deny"
}

# METADATA
# description: Every reason the call must be denied; empty means allowed or approval required.
deny_reasons contains "unknown_agent" if not agent

# METADATA
# description: A suspended agent is denied whatever it holds, as is one whose state is missing.
deny_reasons contains "agent_suspended" if {
	agent
	not agent_active
}

# METADATA
# description: Calls to an app the directory does not know are denied.
deny_reasons contains "unknown_app" if not app

# METADATA
# description: An action class outside read, write and delete is denied.
deny_reasons contains "invalid_action_class" if not action_class in action_classes

# METADATA
# description: An admin can switch a single tool off.
deny_reasons contains "tool_disabled" if tool_config.disabled == true

# METADATA
# description: An app can forbid deletes through agents altogether.
deny_reasons contains "delete_denied" if deletes_denied

# METADATA
# description: Why the agent's own entitlement does not cover the call.
deny_reasons contains reason if {
	well_formed
	some reason in entitlement_failures
}

# METADATA
# description: Why the user's delegation does not cover the call (delegated calls only).
deny_reasons contains reason if {
	well_formed
	some reason in delegation_failures
}

# METADATA
# description: An approval is needed but nobody other than the requester could give it.
deny_reasons contains "no_eligible_approver" if {
	count(approval_reasons) > 0
	count(eligible_approvers) == 0
}

# --- the agent's own entitlement -------------------------------------------------------------

# METADATA
# description: The agent's grants on this app (a list; usually one or two).
grants := data.directory.entitlements[input.agent.id][input.app.id]

# METADATA
# description: The agent's grants that name this action class.
covering_grants contains grant if {
	some grant in grants
	action_class in grant.actions
}

# METADATA
# description: The covering grants whose every condition holds for this call.
matching_grants contains grant if {
	some grant in covering_grants
	count(condition_failures(grant, input)) == 0
}

# METADATA
# description: |
#   No covering grant: no_entitlement. Otherwise, when none matches, the union of what each
#   covering grant missed (expiry, time window, arguments, client type).
entitlement_failures := {"no_entitlement"} if {
	count(covering_grants) == 0
} else := set() if {
	count(matching_grants) > 0
} else := {reason |
	some grant in covering_grants
	some reason in condition_failures(grant, input)
}

# --- delegation: at most the intersection ------------------------------------------------------

# METADATA
# description: The grants the user delegated to this agent on this app.
delegations := data.directory.delegations[input.user.id][input.agent.id][input.app.id]

# METADATA
# description: Delegated grants that name this action class.
covering_delegations contains grant if {
	some grant in delegations
	action_class in grant.actions
}

# METADATA
# description: Delegated grants whose every condition holds for this call.
matching_delegations contains grant if {
	some grant in covering_delegations
	count(condition_failures(grant, input)) == 0
}

# METADATA
# description: Delegation reasons use their own codes so the agent owner and user can tell them apart.
delegation_reason := {
	"entitlement_expired": "delegation_expired",
	"outside_time_window": "delegation_outside_time_window",
	"argument_not_permitted": "delegation_argument_not_permitted",
	"client_type_not_permitted": "delegation_client_type_not_permitted",
}

# METADATA
# description: Empty for calls without a user; otherwise why the delegation does not cover the call.
delegation_failures := set() if {
	not input.user.id
} else := {"not_delegated"} if {
	count(covering_delegations) == 0
} else := set() if {
	count(matching_delegations) > 0
} else := {code |
	some grant in covering_delegations
	some reason in condition_failures(grant, input)
	some failure, code in delegation_reason
	failure == reason
}

# --- conditions on a grant ---------------------------------------------------------------------

# METADATA
# description: |
#   The reason codes of every condition of a grant that a call (the input document) does not meet.
#   Functions take the call as an argument rather than reading input, so they can be tested alone.
condition_failures(grant, call) := failures if {
	# Missing parts become empty objects, never undefined: an undefined argument would make the
	# checks below undefined and so silently pass (time conditions must fail closed without time).
	clock := object.get(call, "time", {})
	expiry := {"entitlement_expired" | expired(grant, clock)}
	window := {"outside_time_window" | outside_window(grant, clock)}
	arguments := {"argument_not_permitted" | not arguments_permitted(grant, object.get(call, "arguments", {}))}
	client := {"client_type_not_permitted" | not client_type_permitted(grant, object.get(call, "agent", {}))}
	failures := ((expiry | window) | arguments) | client
}

# METADATA
# description: A grant with expires_at (Unix ms) is expired unless time.now_ms is before it.
expired(grant, clock) if {
	expires_at := grant.expires_at
	not before(clock, expires_at)
}

# METADATA
# description: |
#   The call happens before the given Unix ms. A helper rather than an inline comparison under
#   `not`, so a missing input.time counts as "not before" (fail closed) in every evaluator.
before(clock, unix_ms) if clock.now_ms < unix_ms

# METADATA
# description: Every constrained argument is present and one of the grant's allowed values.
arguments_permitted(grant, arguments) if {
	every name, allowed in object.get(grant, "arguments", {}) {
		arguments[name] in allowed
	}
}

# METADATA
# description: A grant without client_types admits any client type.
client_type_permitted(grant, _) if not grant.client_types

# METADATA
# description: A grant with client_types admits only those agent client types.
client_type_permitted(grant, agent_input) if agent_input.client_type in grant.client_types

# --- approvals ---------------------------------------------------------------------------------

# METADATA
# description: The reason code for an approval requirement on each action class.
approval_reason := {
	"read": "read_requires_approval",
	"write": "write_requires_approval",
	"delete": "delete_requires_approval",
}

# METADATA
# description: A matching grant of the agent can require approval for its action class.
approval_reasons contains approval_reason[action_class] if {
	some grant in matching_grants
	action_class in grant.require_approval
}

# METADATA
# description: A matching delegation can require approval too; the stricter side wins.
approval_reasons contains approval_reason[action_class] if {
	some grant in matching_delegations
	action_class in grant.require_approval
}

# METADATA
# description: An app can require approval for every delete.
approval_reasons contains "delete_requires_approval" if {
	action_class == "delete"
	app.delete == "require_approval"
}

# METADATA
# description: The app's approvers, when it names any.
approver_candidates contains approver if {
	some approver in app.approvers
}

# METADATA
# description: Without app approvers, the agent's owner approves.
approver_candidates contains agent.owner if not app.approvers

# METADATA
# description: The human on whose behalf the call is made; the agent's owner when no user is given.
requester := object.get(input, ["user", "id"], agent.owner)

# METADATA
# description: A delete must be approved by someone other than the requesting user.
eligible_approvers := approver_candidates - {requester} if {
	action_class == "delete"
} else := approver_candidates

# --- obligations -------------------------------------------------------------------------------

# METADATA
# description: Without a class from a grant or the app, calls are rate-limited as standard.
default rate_limit_class := "standard"

# METADATA
# description: First by name of the matching delegations' classes, else of the grants', else the app's.
rate_limit_class := classes[0] if {
	classes := sort({grant.rate_limit_class | some grant in matching_delegations})
	count(classes) > 0
} else := classes[0] if {
	classes := sort({grant.rate_limit_class | some grant in matching_grants})
	count(classes) > 0
} else := class if {
	class := app.rate_limit_class
}

# METADATA
# description: Response fields the enforcement point must redact, from the tool's settings.
redactions contains path if {
	some path in tool_config.redact
}

# METADATA
# description: Redactions a matching grant adds.
redactions contains path if {
	some grant in matching_grants
	some path in grant.redact
}

# METADATA
# description: Redactions a matching delegation adds.
redactions contains path if {
	some grant in matching_delegations
	some path in grant.redact
}

# METADATA
# description: |
#   DLP modes for the call, per direction (arguments, results) and category of finding
#   (secrets, personal): allow, redact or block. Without app settings for the action class the
#   bundle defaults (data.portcullis.defaults.dlp) apply as they are, the common case and the
#   cheap one (they must be complete: the engine denies a decision whose obligation is not, and
#   rego tests pin them). Unknown action classes, or a bundle without defaults, block everything.
dlp := defaults if {
	not app.dlp[action_class]
	defaults := data.portcullis.defaults.dlp[action_class]
} else := merged_dlp

# METADATA
# description: |
#   The app's settings for the action class over the defaults, leaf by leaf; a leaf given by
#   neither, or a value that is not a mode, becomes block, so an incomplete or mistyped setting
#   never lets data through.
merged_dlp[direction] := modes if {
	some direction in dlp_directions
	modes := {category: mode |
		some category in dlp_categories
		mode := known_dlp_mode(object.get(
			dlp_overrides, [direction, category],
			object.get(dlp_fallbacks, [direction, category], "block"),
		))
	}
}

# METADATA
# description: Where DLP looks.
dlp_directions := {"arguments", "results"}

# METADATA
# description: What DLP looks for; every detector of packages/dlp belongs to exactly one.
dlp_categories := {"secrets", "personal"}

# METADATA
# description: Without an app setting for the action class, the defaults decide.
default dlp_overrides := {}

# METADATA
# description: The app's DLP settings for the call's action class.
dlp_overrides := app.dlp[action_class]

# METADATA
# description: Without bundle defaults for the action class, every leaf the app leaves out blocks.
default dlp_fallbacks := {}

# METADATA
# description: The bundle's DLP defaults for the call's action class (rego/portcullis/defaults).
dlp_fallbacks := data.portcullis.defaults.dlp[action_class]

# METADATA
# description: A mode the enforcement point knows passes as is; anything else becomes block.
known_dlp_mode(mode) := mode if {
	mode in {"allow", "redact", "block"}
} else := "block"

# --- visibility in tool listings -----------------------------------------------------------------

# METADATA
# description: |
#   Whether the gateway lists this tool to the agent: the call could be allowed for some
#   arguments at some time. The agent is active, the app and action class are known, the tool is
#   not disabled, the app does not forbid its deletes, and a grant of the agent (and, for a
#   delegated listing, a delegation of the user) names the action class, is not expired and
#   admits the client type. Argument allow-lists, time windows and approval requirements are
#   ignored: a listing has no arguments, it outlives the instant it is made (a window opens
#   later without any directory change to announce it), and a tool that needs approval can be used.
default visible := false

# METADATA
# description: Visible when every listing condition above holds.
visible if {
	well_formed
	not tool_config.disabled == true
	not deletes_denied
	some grant in covering_grants
	listable(grant, input)
	delegation_listable
}

# METADATA
# description: A listing without a delegating user needs no delegation.
delegation_listable if not input.user.id

# METADATA
# description: A delegated listing needs a listable delegation for the action class too.
delegation_listable if {
	some grant in covering_delegations
	listable(grant, input)
}

# METADATA
# description: The conditions of a grant a listing can judge, which are expiry and client type.
listable(grant, call) if {
	not expired(grant, object.get(call, "time", {}))
	client_type_permitted(grant, object.get(call, "agent", {}))
}
