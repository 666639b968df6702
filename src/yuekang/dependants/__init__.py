"""Family members (亲友代办): a proofed adult holds codes for children and for elderly people
without a smartphone, each proofed against the registry, adults with their consent."""
