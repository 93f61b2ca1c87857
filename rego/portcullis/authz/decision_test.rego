# METADATA
# description: Tests for the tool-call authorization decision, one per rule and reason code.
package portcullis.authz_test

import data.portcullis.authz

directory := {
	"agents": {
		"agt_reader": {"state": "active"},
		"agt_writer": {"state": "active"},
		"agt_suspended": {"state": "suspended"},
	},
	"entitlements": {
		"agt_reader": {"demo": ["read"]},
		"agt_writer": {"demo": ["read", "write"]},
		"agt_suspended": {"demo": ["read", "write", "delete"]},
	},
}

call(agent_id, app_id, action_class) := {
	"agent": {"id": agent_id},
	"app": {"id": app_id},
	"tool": {"name": "some_tool"},
	"action_class": action_class,
	"arguments": {},
}

test_entitled_read_is_allowed if {
	authz.decision == {"allow": true, "reasons": ["allowed"]} with input as call("agt_reader", "demo", "read")
		with data.directory as directory
}

test_write_needs_its_own_entitlement if {
	authz.decision == {"allow": false, "reasons": ["no_entitlement"]} with input as call("agt_reader", "demo", "write")
		with data.directory as directory
	authz.decision.allow with input as call("agt_writer", "demo", "write")
		with data.directory as directory
}

test_delete_is_denied_without_delete_entitlement if {
	authz.decision == {"allow": false, "reasons": ["no_entitlement"]} with input as call("agt_writer", "demo", "delete")
		with data.directory as directory
}

test_entitlement_is_per_app if {
	authz.decision == {"allow": false, "reasons": ["no_entitlement"]} with input as call("agt_reader", "other", "read")
		with data.directory as directory
}

test_unknown_agent_is_denied if {
	authz.decision == {"allow": false, "reasons": ["unknown_agent"]} with input as call("agt_nobody", "demo", "read")
		with data.directory as directory
}

test_suspended_agent_is_denied_despite_entitlements if {
	authz.decision == {"allow": false, "reasons": ["agent_suspended"]} with input as call("agt_suspended", "demo", "read")
		with data.directory as directory
}

test_unknown_action_class_is_denied if {
	authz.decision == {"allow": false, "reasons": ["no_entitlement"]} with input as call("agt_writer", "demo", "admin")
		with data.directory as directory
}

test_no_directory_denies_everything if {
	authz.decision == {"allow": false, "reasons": ["unknown_agent"]} with input as call("agt_reader", "demo", "read")
		with data.directory as {}
}
