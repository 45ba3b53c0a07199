"""Christmas assessment signup: Notion contact upsert plus a Resend welcome sequence."""
