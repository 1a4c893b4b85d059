"""The tool names tests expect, pinned in one place (in the order tools/list gives them)."""

SLACK_TOOLS = [
    "slack_post_message",
    "slack_list_channels",
    "slack_update_message",
    "slack_add_reaction",
    "slack_upload_file",
]
TELEGRAM_TOOLS = ["telegram_send_message", "telegram_get_me", "telegram_get_updates"]
