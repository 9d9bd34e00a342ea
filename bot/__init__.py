"""The Discord side of i2v-bot: commands, views, status messages and delivery. Never imports torch."""
