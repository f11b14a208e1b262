"""The mask audit: how deep is an alignment? One module per metric (issue 8)."""
