"""What a click on a job's button does: Cancel, Re-roll, Vary, Delete, Info, Report.

Each button is a :class:`ClickItem` (the ``DynamicItem`` base the admin listings' buttons share) matching a
custom-id template of ``bot.components`` (``i2v:<action>:<job>``), registered once at start, so a click after a
restart is parsed from its ``custom_id`` and the job is read from the database. Every button acts only for the
job's requester or the bot's operator, and Cancel and Delete also for an admin of the job's own server
(:func:`bot.permissions.check_job_access`, checked on every click). Every refusal is a short ephemeral message
through ``bot.tree.explain_error``. Report is the exception: any member of the job's server may report a result
(once per member and job, not their own), for that server's admins and the operator
(``/admin reports``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, cast

import discord
from sqlalchemy.exc import IntegrityError

from bot.components import VARY_MODEL_ACTION, job_template
from bot.errors import UserFacingError
from bot.modals import VaryModal
from bot.render import render_info
from bot.requests import cancel_job_for, check_interaction_channel, load_job, load_own_job, queue_variant
from bot.tree import explain_error
from bot.withholding import delete_stored_video
from jobs.safety import ReportRefused, add_report

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT", bound=discord.ui.Item[Any])

REPORTED_MESSAGE = "Thank you: this server's admins will look at this video. Nobody is told who reported it."
NO_SUCH_REPORT_TARGET = "There is no such video to report."
ALREADY_REPORTED = "You have already reported this video; the admins will look at it."


NEVER = r"(?!)"  # the template of an abstract base: matches no custom id


class ClickItem(discord.ui.DynamicItem[ItemT], template=NEVER):
    """Base of every restart-safe component (job buttons here, the admin listings' in ``bot.admin_buttons``).

    A subclass passes its ``template`` (a ``bot.components`` pattern) as a class keyword, reads what the click needs
    from the ``custom_id``'s groups in :meth:`parse`, and implements :meth:`run`. A click first passes
    :meth:`allowed` (the scope check, which answers a refusal itself); every error in either goes through
    ``bot.tree.explain_error``, so a refusal or a failure is one short ephemeral message."""

    ITEM: ClassVar[type[discord.ui.Item[Any]]] = discord.ui.Button  # the component kind the template is for

    def __init_subclass__(cls, *, template: str = NEVER, **kwargs: Any) -> None:
        super().__init_subclass__(template=template, **kwargs)

    def __init__(self, item: ItemT) -> None:
        super().__init__(item)
        match = self.template.match(self.custom_id)
        assert match is not None  # DynamicItem refuses an item whose custom id does not match
        self.parse(match)

    def parse(self, match: re.Match[str]) -> None:
        """Read what a click needs from the ``custom_id``'s groups (subclasses)."""

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        if not isinstance(item, cls.ITEM):  # a forged custom id on another kind of component
            raise TypeError(f"{cls.__name__}: expected a {cls.ITEM.__name__}, got {type(item).__name__}")
        return cls(cast(ItemT, item))

    async def allowed(self, interaction: discord.Interaction) -> bool:
        """Whether the clicker may use this component at all; a refusal answers them. Job buttons check their job
        in :meth:`run` instead."""
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = cast("I2VBot", interaction.client)
        try:
            if await self.allowed(interaction):
                await self.run(bot, interaction)
        except Exception as error:  # noqa: BLE001 - the funnel decides between a user message and a logged failure
            await explain_error(interaction, error)

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        """What the click does (subclasses)."""
        raise NotImplementedError


class _JobButton(ClickItem[discord.ui.Button]):
    """Base for the job buttons (``i2v:<ACTION>:<job>``); subclasses set ACTION and implement :meth:`run`. The
    button itself (label, style) is the one clicked, laid out by ``bot.components``."""

    ACTION = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(template=job_template(cls.ACTION), **kwargs)

    def parse(self, match: re.Match[str]) -> None:
        self.job_id = int(match["job"])


class CancelButton(_JobButton):
    """Cancel a queued job (refunded) or ask the worker to stop a running one (charged for time used)."""

    ACTION = "cancel"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "cancel", server_admins=True)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(await cancel_job_for(bot, job), ephemeral=True)


class RerollButton(_JobButton):
    """Queue the same parameters again with a new random seed."""

    ACTION = "reroll"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "re-roll")
        await interaction.response.defer(ephemeral=True, thinking=True)
        await queue_variant(bot, interaction, job, source="reroll", changes={"seed": None})


class VaryButton(_JobButton):
    """Open a modal to change the prompt or parameters, then queue the variant."""

    ACTION = "vary"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "vary")
        check_interaction_channel(interaction)  # before the form, not after it was filled in
        await interaction.response.send_modal(VaryModal(job))


class VaryModelSelect(ClickItem[discord.ui.Select], template=job_template(VARY_MODEL_ACTION)):
    """The select under a delivered video: open the Vary form for the model chosen (its own ranges and presets)."""

    ITEM = discord.ui.Select

    def parse(self, match: re.Match[str]) -> None:
        self.job_id = int(match["job"])

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "vary")
        values = self.item.values
        model = values[0] if values else ""
        if model not in bot.settings.models:
            raise UserFacingError(f"{model!r} is not one of the models this bot offers.")
        await interaction.response.send_modal(VaryModal(job, model=model))


class DeleteButton(_JobButton):
    """Delete the result message, the stored video and its disk copy."""

    ACTION = "delete"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "delete", server_admins=True)
        await interaction.response.defer(ephemeral=True, thinking=True)
        message_id = interaction.message.id if interaction.message else job.result_message_id
        if message_id is None:
            raise UserFacingError(f"Job #{job.id} has no result message to delete.")
        channel = bot.get_partial_messageable(interaction.channel_id or job.channel_id, guild_id=job.guild_id)
        try:
            await channel.get_partial_message(message_id).delete()
        except discord.NotFound:
            pass  # already gone: the outcome the user asked for
        await delete_stored_video(bot, job.id)
        log.info("user %s deleted the result of job %s (message %s)", interaction.user.id, job.id, message_id)
        await interaction.followup.send(f"Deleted the video of job #{job.id}.", ephemeral=True)


class InfoButton(_JobButton):
    """Show every parameter of the job to its requester or the operator (ephemeral)."""

    ACTION = "info"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_own_job(bot, interaction, self.job_id, "see the details of")
        await interaction.response.send_message(render_info(job), ephemeral=True)


class ReportButton(_JobButton):
    """Any member of the job's server reports the video to that server's admins and the operator."""

    ACTION = "report"

    async def run(self, bot: I2VBot, interaction: discord.Interaction) -> None:
        job = await load_job(bot, self.job_id)
        if job.guild_id is None or job.guild_id != interaction.guild_id:  # only from the video's own server
            raise UserFacingError(NO_SUCH_REPORT_TARGET)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            async with bot.sessions.begin() as session:
                await add_report(session, job.id, reporter_id=interaction.user.id)
        except ReportRefused as refused:
            raise UserFacingError(str(refused)) from None
        except IntegrityError:  # a second click raced the first
            raise UserFacingError(ALREADY_REPORTED) from None
        log.info("user %s reported the video of job %s (guild %s)", interaction.user.id, job.id, job.guild_id)
        await interaction.followup.send(REPORTED_MESSAGE, ephemeral=True)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    CancelButton,
    RerollButton,
    VaryButton,
    VaryModelSelect,
    DeleteButton,
    InfoButton,
    ReportButton,
)
