/**
 * An agents file of one Billing agent whose refunds go to an operator's HTTP tool at `url`
 * (`/refunds`): what the HTTP tools' retry and crash tests play against an endpoint of their own.
 */
export function refundToolAgents(
  url: string,
  tool: { class: "write" | "irreversible"; timeout?: string },
): string {
  return `
defaults:
  entry_agent: billing
agents:
  - id: billing
    name: Billing
    icon: ":credit_card:"
    instructions: Refund what the customer asks.
    tools: [refund_card]
tools:
  - name: refund_card
    description: Refund an amount to the customer's card.
    class: ${tool.class}
    url: ${url}/refunds${tool.timeout ? `\n    timeout: ${tool.timeout}` : ""}
    parameters:
      type: object
      properties:
        order_id: { type: string }
        amount_usd: { type: number }
      required: [order_id, amount_usd]
`;
}
