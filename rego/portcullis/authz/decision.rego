# METADATA
# title: Tool-call authorization
# description: |
#   Decides one MCP tools/call for an agent. An agent may call a tool only when it holds an
#   entitlement for the tool's app and action class (read, write or delete). Agent entitlements
#   are separate from any human's access. Anything not allowed is denied.
#
#   Input:  agent.id, app.id, tool.name, action_class, arguments.
#   Data:   directory.agents[agent_id] = {state}, directory.entitlements[agent_id][app_id] = [classes].
#   Result: {"allow": bool, "reasons": [reason codes]} at data.portcullis.authz.decision.
package portcullis.authz

# METADATA
# description: The decision the broker enforces; the only entrypoint of the bundle.
# scope: document
# entrypoint: true
decision := {"allow": true, "reasons": ["allowed"]} if {
	count(deny_reasons) == 0
} else := {"allow": false, "reasons": sort(deny_reasons)}

# Lookups are by key, never by iterating the directory: Wasm has no rule indexing, and the
# directory holds many thousands of agents.
agent := data.directory.agents[input.agent.id]

# METADATA
# description: Every reason the call must be denied; empty means allowed.
# scope: document
deny_reasons contains "unknown_agent" if not agent

deny_reasons contains "agent_suspended" if agent.state != "active"

deny_reasons contains "no_entitlement" if {
	agent.state == "active"
	not entitled
}

entitled if input.action_class in data.directory.entitlements[input.agent.id][input.app.id]
