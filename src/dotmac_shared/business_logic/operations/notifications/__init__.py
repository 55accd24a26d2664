"""The notification outbox relay: delivers queued notices by e-mail and signed webhooks.

Operations queue notices in ``dotmac_notification_outbox`` in the same transaction as the
change they announce (:class:`~dotmac_shared.business_logic.operations.OutboxNotifier`).
:class:`NotificationRelay` delivers them at least once through a :class:`Transport` per
channel (:class:`SmtpTransport`, :class:`WebhookTransport`), retries transient failures
with backoff and moves permanent ones to the dead letter. Several relays may share one
PostgreSQL outbox. Receivers deduplicate on the notice's dedupe key (the e-mail's
``Message-ID``, the webhook's ``X-Dotmac-Webhook-Id``) and check webhook signatures with
:func:`verify_webhook_signature`.
"""

from dotmac_shared.business_logic.operations.notifications._decide import (
    Backoff,
    OutboxStatus,
    decide,
    http_status_is_transient,
    smtp_code_is_transient,
)
from dotmac_shared.business_logic.operations.notifications._relay import (
    NotificationRelay,
    OutboxCounts,
    RelayReport,
    outbox_counts,
)
from dotmac_shared.business_logic.operations.notifications._signature import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    sign_webhook,
    verify_webhook_signature,
)
from dotmac_shared.business_logic.operations.notifications._smtp import (
    DEFAULT_SENDER,
    SmtpTransport,
    message_id_for,
)
from dotmac_shared.business_logic.operations.notifications._templates import (
    NOTICE_TEMPLATES,
    NoticeTemplates,
    RenderedNotice,
)
from dotmac_shared.business_logic.operations.notifications._transport import (
    OutgoingNotice,
    Transport,
)
from dotmac_shared.business_logic.operations.notifications._webhook import (
    WebhookTransport,
    webhook_body,
)

__all__ = [
    "Backoff",
    "DEFAULT_SENDER",
    "NOTICE_TEMPLATES",
    "NoticeTemplates",
    "NotificationRelay",
    "OutboxCounts",
    "OutboxStatus",
    "OutgoingNotice",
    "RelayReport",
    "RenderedNotice",
    "SIGNATURE_HEADER",
    "SmtpTransport",
    "Transport",
    "WEBHOOK_ID_HEADER",
    "WebhookTransport",
    "decide",
    "http_status_is_transient",
    "message_id_for",
    "outbox_counts",
    "sign_webhook",
    "smtp_code_is_transient",
    "verify_webhook_signature",
    "webhook_body",
]
