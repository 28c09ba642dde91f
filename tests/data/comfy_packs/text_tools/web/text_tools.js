// The frontend side of text_tools: nothing to do but be served under /extensions/text_tools/.
export const TEXT_TOOLS = "text_tools";
