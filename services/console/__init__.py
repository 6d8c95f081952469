"""The operator console: the live dashboard (`GET /dashboard`, its page and
`/dashboard/api/state`) and its controls (place orders, make events fail, pause or resume an
instance). It is not a service: no subscriptions, tables or process of its own, no business.
The notification process serves it, because its feed (every instance's `instance_activity`)
rides notification's WebSocket gateway (`services.notification.live`, `/ws`): the console
imports that gateway and the chassis, and only notification imports the console."""
